-- Per problem: its source and level (meta at $level_path), and what sampling
-- found (trials, correct, fail rate, DART target and status; NULL: not sampled).
SELECT p.problem_id, p.source,
       coalesce(json_extract_string(p.meta, $level_path), p.source) AS level,
       d.n_trials, d.n_correct, d.pass_rate, d.fail_rate, d.target, d.status
FROM problems p
LEFT JOIN difficulty d USING (problem_id)
ORDER BY level, p.problem_id;
