-- Every trace with a settled outcome (verdict of $verifier, else an imported
-- one), for DART selection; $model limits it to one teacher when non-empty.
SELECT t.problem_id, t.trace_id, t.sample_index, o.status = 'correct' AS correct
FROM traces t
JOIN trace_outcomes($verifier) o USING (trace_id)
WHERE o.status IN ('correct', 'wrong', 'no_answer', 'truncated')
  AND ($model = '' OR t.model = $model)
ORDER BY t.problem_id, t.sample_index;
