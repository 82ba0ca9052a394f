-- Every trace with a settled outcome (verdict of $verifier, else an imported
-- one), its steps and its first error under $method (localized: a label row
-- exists, whose first_error is NULL when undetermined), in sample order per problem.
WITH step_lists AS (
    SELECT trace_id,
           list(char_start ORDER BY step_index) AS starts,
           list(char_end ORDER BY step_index)   AS ends,
           list(text ORDER BY step_index)       AS step_texts
    FROM steps
    GROUP BY trace_id
)
SELECT t.trace_id, t.problem_id, t.prompt, t.completion, t.sample_index,
       o.status, o.status = 'correct' AS correct, s.starts, s.ends, s.step_texts, f.first_error,
       f.trace_id IS NOT NULL AS localized
FROM traces t
JOIN trace_outcomes($verifier) o USING (trace_id)
LEFT JOIN step_lists s USING (trace_id)
LEFT JOIN first_errors f ON f.trace_id = t.trace_id AND f.method = $method
WHERE o.status IN ('correct', 'wrong', 'no_answer', 'truncated')
ORDER BY t.problem_id, t.sample_index, t.trace_id;
