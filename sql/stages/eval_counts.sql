-- Samples and correct samples per evaluation, problem set, level and problem,
-- over the sets $sets (every evaluation that sampled them: `pitfall eval --compare`).
SELECT e.eval_id, e.model, ep.problem_set, ep.level, ep.problem_id,
       count(*)                                     AS n,
       count(*) FILTER (WHERE s.status = 'correct') AS c
FROM eval_samples s
JOIN evals e USING (eval_id)
JOIN eval_problems ep USING (problem_id)
WHERE ep.problem_set IN (SELECT unnest($sets::VARCHAR[]))
GROUP BY ALL
ORDER BY e.model, e.eval_id, ep.problem_set, ep.level, ep.problem_id;
