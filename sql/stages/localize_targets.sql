-- Traces $method has not localized yet, with their outcome and steps.
-- The outcome is the verdict of $verifier, else of an imported verifier; only
-- settled outcomes count (timeouts and errors stay out). With $need_gold,
-- problems without a gold answer are left out (rollouts need one to be checked).
-- $sources limits the problems when it is non-empty; $limit caps the rows (0: no cap).
WITH outcome AS (
    SELECT trace_id,
           arg_min(status, CASE WHEN verifier = $verifier THEN 0 ELSE 1 END) AS status
    FROM verdicts
    WHERE verifier = $verifier OR verifier LIKE 'imported:%'
    GROUP BY trace_id
),
step_lists AS (
    SELECT trace_id,
           list(char_start ORDER BY step_index) AS starts,
           list(text ORDER BY step_index)       AS step_texts
    FROM steps
    GROUP BY trace_id
)
SELECT t.trace_id, t.problem_id, p.problem, p.answer, t.prompt, t.completion,
       o.status, s.starts, s.step_texts
FROM traces t
JOIN problems p USING (problem_id)
JOIN outcome o USING (trace_id)
JOIN step_lists s USING (trace_id)
ANTI JOIN (SELECT trace_id FROM first_errors WHERE method = $method) f USING (trace_id)
WHERE o.status IN ('correct', 'wrong', 'no_answer', 'truncated')
  AND (NOT $need_gold OR p.answer IS NOT NULL)
  AND (len($sources) = 0 OR list_contains($sources, p.source))
ORDER BY t.trace_id
LIMIT CASE WHEN $limit > 0 THEN $limit END;
