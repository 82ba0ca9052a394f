-- Pass rate per source and level (the `level` field of problems.meta, which pitfall eval reads by default; 'all': the whole source) over verified traces; timeouts and errors count as failures.
-- A trace's outcome is its math-verify verdict (the latest, if several versions
-- judged it), else an imported one, as trace_outcomes() settles it. Problems
-- without a verified trace count in `problems` only.
WITH outcome AS (SELECT * FROM latest_outcomes()),
per_problem AS (
    SELECT p.source,
           json_extract_string(p.meta, '$.level')      AS level,
           p.problem_id,
           count(o.trace_id)                           AS verified,
           count(*) FILTER (WHERE o.status = 'correct') AS correct
    FROM problems p
    LEFT JOIN traces t USING (problem_id)
    LEFT JOIN outcome o USING (trace_id)
    GROUP BY ALL
),
leveled AS (
    SELECT * FROM per_problem WHERE level IS NOT NULL
    UNION ALL
    SELECT * REPLACE ('all' AS level) FROM per_problem
)
SELECT source, level,
       count(*)                                  AS problems,
       count(*) FILTER (WHERE verified > 0)      AS sampled,
       count(*) FILTER (WHERE correct > 0)       AS solved,
       sum(verified)::BIGINT                     AS verified,
       sum(correct)::BIGINT                      AS correct,
       round(sum(correct) / nullif(sum(verified), 0), 4) AS pass_rate
FROM leveled
GROUP BY source, level
ORDER BY source, level = 'all', level;
