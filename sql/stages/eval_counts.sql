-- Samples and correct samples per evaluation, problem set, level and problem,
-- over the sets $sets (every evaluation that sampled them: `pitfall eval --compare`).
SELECT *
FROM eval_problem_counts($sets::VARCHAR[])
ORDER BY model, eval_id, problem_set, level, problem_id;
