-- Per localization method: traces labelled, those not verified correct, first errors found, the rollouts and rollout tokens its labels rested on (reused ones included) and the judge's critic tokens, per trace not verified correct and per error found.
-- n_rollouts counts every rollout a label's verdicts used, also those another
-- method or an earlier run drew: methods sharing a rollout policy share them,
-- so the sum over methods can exceed the rollouts table. Correct traces cost
-- nothing (-1 without a rollout), hence the per-trace figures leave them out.
WITH outcome AS (SELECT * FROM latest_outcomes()),
labels AS (
    SELECT f.method, f.first_error,
           o.status IS DISTINCT FROM 'correct'                        AS not_correct,
           coalesce(f.n_rollouts, 0)                                  AS rollouts,
           coalesce(f.rollout_tokens, 0)                              AS rollout_tokens,
           coalesce(json_extract(f.detail, '$.critic_tokens')::BIGINT, 0) AS critic_tokens
    FROM first_errors f
    LEFT JOIN outcome o USING (trace_id)
),
per_method AS (
    SELECT method,
           count(*)                                  AS labelled,
           count(*) FILTER (WHERE not_correct)       AS not_correct,
           count(*) FILTER (WHERE first_error >= 0)  AS errors_found,
           sum(rollouts)::BIGINT                     AS rollouts,
           sum(rollout_tokens)::BIGINT               AS rollout_tokens,
           sum(critic_tokens)::BIGINT                AS critic_tokens
    FROM labels
    GROUP BY method
)
SELECT method, labelled, not_correct, errors_found, rollouts, rollout_tokens, critic_tokens,
       round(rollouts / nullif(not_correct, 0), 2)                              AS rollouts_per_trace,
       round((rollout_tokens + critic_tokens) / nullif(not_correct, 0), 1)      AS tokens_per_trace,
       round((rollout_tokens + critic_tokens) / nullif(errors_found, 0), 1)     AS tokens_per_error_found
FROM per_method
ORDER BY method;
