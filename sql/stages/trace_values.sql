-- Monte-Carlo prefix values of the traces in $ids, estimates from at least $min_k rollouts.
SELECT trace_id, policy, prefix_len, value
FROM step_values
WHERE k >= $min_k AND trace_id IN (SELECT unnest($ids))
ORDER BY trace_id, policy, prefix_len;
