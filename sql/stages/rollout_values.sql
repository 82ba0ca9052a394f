-- Monte-Carlo value of every probed prefix of the traces in $ids under $policy:
-- the share of its rollouts that reached the gold answer.
SELECT trace_id, prefix_len, policy,
       count(*)                                 AS k,
       count(*) FILTER (WHERE correct)          AS n_correct,
       count(*) FILTER (WHERE correct) / count(*) AS value
FROM rollouts
WHERE policy = $policy
  AND trace_id IN (SELECT unnest($ids))
GROUP BY trace_id, prefix_len, policy
ORDER BY trace_id, prefix_len;
