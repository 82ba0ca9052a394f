-- Every localized trace, per method: its first error (0-based, -1 none, NULL
-- undetermined), its number of steps, and the rollouts and tokens spent on it.
WITH step_counts AS (
    SELECT trace_id, count(*) AS n_steps FROM steps GROUP BY trace_id
)
SELECT f.method, f.trace_id, f.first_error, s.n_steps, f.n_rollouts, f.rollout_tokens
FROM first_errors f
LEFT JOIN step_counts s USING (trace_id)
ORDER BY f.method, f.trace_id;
