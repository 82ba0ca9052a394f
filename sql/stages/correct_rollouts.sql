-- Rollouts that reached the gold answer, for the traces in $ids, in index order.
SELECT trace_id, prefix_len, policy, rollout_index, completion
FROM rollouts
WHERE correct AND trace_id IN (SELECT unnest($ids))
ORDER BY trace_id, prefix_len, policy, rollout_index;
