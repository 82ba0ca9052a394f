-- Problems with a gold answer that no verified trace solved, most verified traces first: level, DART status, the commonest wrong answer and how many traces gave it.
-- Outcome: the math-verify verdict, else an imported one (as pass_rate_by_level).
-- Imported verdicts carry no extracted answer, so top_wrong_answer is empty for them.
WITH outcome AS (SELECT * FROM latest_outcomes()),
per_problem AS (
    SELECT t.problem_id,
           count(*)                                      AS verified,
           count(*) FILTER (WHERE o.status = 'correct')  AS correct,
           count(*) FILTER (WHERE o.status = 'wrong')    AS wrong,
           count(*) FILTER (WHERE o.status IN ('truncated', 'no_answer')) AS truncated_or_no_answer
    FROM traces t
    JOIN outcome o USING (trace_id)
    GROUP BY t.problem_id
),
wrong_answers AS (
    SELECT t.problem_id, o.extracted, count(*) AS n
    FROM traces t
    JOIN outcome o USING (trace_id)
    WHERE o.status = 'wrong' AND o.extracted IS NOT NULL
    GROUP BY ALL
),
top_wrong AS (
    SELECT problem_id,
           arg_max(extracted, (n, extracted)) AS answer,  -- ties: the larger text, so the order is fixed
           max(n)                             AS n
    FROM wrong_answers
    GROUP BY problem_id
)
SELECT pp.problem_id, p.source,
       json_extract_string(p.meta, '$.level') AS level,
       pp.verified, pp.wrong, pp.truncated_or_no_answer,
       d.status                               AS dart_status,
       p.answer                               AS gold,
       w.answer                               AS top_wrong_answer,
       w.n                                    AS top_wrong_count,
       left(p.problem, 120)                   AS problem
FROM per_problem pp
JOIN problems p USING (problem_id)
LEFT JOIN difficulty d USING (problem_id)
LEFT JOIN top_wrong w USING (problem_id)
WHERE pp.correct = 0 AND p.answer IS NOT NULL
ORDER BY pp.verified DESC, pp.problem_id;
