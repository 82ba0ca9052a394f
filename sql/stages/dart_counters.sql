-- Trials and correct answers per problem for one model + sampling params
-- ($model, $params_id, $verifier), overall and over the warm-up (the first
-- $warmup_n samples, whose fail rate is the problem's frozen difficulty);
-- problems limited to $sources when it is non-empty.
SELECT p.problem_id,
       count(t.trace_id)                                     AS n_trials,
       count(t.trace_id) FILTER (WHERE v.status = 'correct') AS n_correct,
       count(t.trace_id) FILTER (WHERE t.sample_index < $warmup_n) AS warmup_trials,
       count(t.trace_id) FILTER (WHERE t.sample_index < $warmup_n AND v.status = 'correct')
                                                             AS warmup_correct
FROM problems p
LEFT JOIN traces t
       ON t.problem_id = p.problem_id AND t.model = $model AND t.params_id = $params_id
LEFT JOIN verdicts v
       ON v.trace_id = t.trace_id AND v.verifier = $verifier
WHERE p.answer IS NOT NULL  -- no gold, nothing to sample for
  AND (len($sources) = 0 OR list_contains($sources, p.source))
GROUP BY p.problem_id
ORDER BY p.problem_id;
