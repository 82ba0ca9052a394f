-- One row describing the store: what a curate run leaves behind.
SELECT
    (SELECT count(*) FROM problems)                          AS problems,
    (SELECT count(*) FROM traces)                            AS traces,
    (SELECT count(*) FROM trace_outcomes($verifier))         AS verified,
    (SELECT count(*) FILTER (WHERE status = 'correct')
       FROM trace_outcomes($verifier))                       AS correct,
    (SELECT count(DISTINCT trace_id) FROM first_errors
      WHERE method <> 'annotated' AND first_error >= 0)      AS localized_failures,
    (SELECT count(*) FROM rollouts)                          AS rollouts,
    (SELECT count(*) FROM pairs)                             AS pairs,
    (SELECT count(*) FROM sft_selection)                     AS sft_selected,
    (SELECT count(*) FROM quarantine)                        AS quarantined;
