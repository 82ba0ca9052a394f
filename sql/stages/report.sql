-- One row describing the store: what a curate run leaves behind.
WITH outcome AS (
    SELECT trace_id,
           arg_min(status, CASE WHEN verifier = $verifier THEN 0 ELSE 1 END) AS status
    FROM verdicts
    WHERE verifier = $verifier OR verifier LIKE 'imported:%'
    GROUP BY trace_id
)
SELECT
    (SELECT count(*) FROM problems)                                        AS problems,
    (SELECT count(*) FROM traces)                                          AS traces,
    (SELECT count(*) FROM outcome)                                         AS verified,
    (SELECT count(*) FILTER (WHERE status = 'correct') FROM outcome)       AS correct,
    (SELECT count(DISTINCT trace_id) FROM first_errors
      WHERE method <> 'annotated' AND first_error >= 0)                    AS localized_failures,
    (SELECT count(*) FROM rollouts)                                        AS rollouts,
    (SELECT count(*) FROM pairs)                                           AS pairs,
    (SELECT count(*) FROM sft_selection)                                   AS sft_selected,
    (SELECT count(*) FROM quarantine)                                      AS quarantined;
