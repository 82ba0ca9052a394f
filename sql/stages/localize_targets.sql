-- Traces $method has not localized yet, with their outcome and steps.
-- The outcome comes from trace_outcomes (sql/macros.sql): correct and wrong
-- traces, and the outcomes listed in $admit (truncated, no_answer: their end
-- says nothing about their steps); timeouts and errors stay out. Per problem,
-- only the first $per_problem non-correct traces by sample index are candidates
-- (0: all); the ranking covers localized traces too, so a rerun does not reach
-- for more.
-- With $need_gold, problems without a gold answer are left out (rollouts need
-- one). $sources limits the problems when non-empty; $limit caps the rows (0: none).
WITH ranked AS (
    SELECT t.trace_id, t.problem_id, t.prompt, t.completion, o.status,
           row_number() OVER (
               PARTITION BY t.problem_id, o.status = 'correct'
               ORDER BY t.sample_index, t.trace_id
           ) AS rank
    FROM traces t
    JOIN trace_outcomes($verifier) o USING (trace_id)
    WHERE o.status IN ('correct', 'wrong') OR list_contains($admit, o.status)
),
step_lists AS (
    SELECT trace_id,
           list(char_start ORDER BY step_index) AS starts,
           list(text ORDER BY step_index)       AS step_texts
    FROM steps
    GROUP BY trace_id
)
SELECT r.trace_id, r.problem_id, p.problem, p.answer, r.prompt, r.completion,
       r.status, s.starts, s.step_texts
FROM ranked r
JOIN problems p USING (problem_id)
JOIN step_lists s USING (trace_id)
ANTI JOIN (SELECT trace_id FROM first_errors WHERE method = $method) f USING (trace_id)
WHERE (r.status = 'correct' OR $per_problem = 0 OR r.rank <= $per_problem)
  AND (NOT $need_gold OR p.answer IS NOT NULL)
  AND (len($sources) = 0 OR list_contains($sources, p.source))
ORDER BY r.trace_id
LIMIT CASE WHEN $limit > 0 THEN $limit END;
