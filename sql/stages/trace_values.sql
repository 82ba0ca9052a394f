-- Monte-Carlo prefix values of the traces in $ids, estimates from at least $min_k
-- rollouts: rollouts behind each, how many reached the answer, and their share.
SELECT trace_id, policy, prefix_len, k, n_correct, value
FROM step_values
WHERE k >= $min_k AND trace_id IN (SELECT unnest($ids))
ORDER BY trace_id, policy, prefix_len;
