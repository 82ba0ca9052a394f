-- Every trace with a settled outcome (verdict of $verifier, else an imported
-- one), for DART selection; $model limits it to one teacher when non-empty.
WITH outcome AS (
    SELECT trace_id,
           arg_min(status, CASE WHEN verifier = $verifier THEN 0 ELSE 1 END) AS status
    FROM verdicts
    WHERE verifier = $verifier OR verifier LIKE 'imported:%'
    GROUP BY trace_id
)
SELECT t.problem_id, t.trace_id, t.sample_index, o.status = 'correct' AS correct
FROM traces t
JOIN outcome o USING (trace_id)
WHERE o.status IN ('correct', 'wrong', 'no_answer', 'truncated')
  AND ($model = '' OR t.model = $model)
ORDER BY t.problem_id, t.sample_index;
