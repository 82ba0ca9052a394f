-- What localization method $method spent: traces labelled, rollouts and their tokens.
SELECT count(*)                      AS traces,
       count(*) FILTER (WHERE first_error >= 0) AS first_errors,
       coalesce(sum(n_rollouts), 0)     AS rollouts,
       coalesce(sum(rollout_tokens), 0) AS rollout_tokens
FROM first_errors
WHERE method = $method;
