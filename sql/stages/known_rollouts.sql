-- Rollouts of $policy already in the store for the traces in $ids.
SELECT trace_id, prefix_len, rollout_index, correct, completion_tokens
FROM rollouts
WHERE policy = $policy
  AND trace_id IN (SELECT unnest($ids));
