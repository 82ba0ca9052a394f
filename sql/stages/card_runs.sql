-- The runs that wrote the rows an export is made of, oldest first.
SELECT run_id, command, status, version, started_at
FROM runs
WHERE run_id IN (
    SELECT run_id FROM problems UNION SELECT run_id FROM traces
    UNION SELECT run_id FROM verdicts UNION SELECT run_id FROM steps
    UNION SELECT run_id FROM rollouts UNION SELECT run_id FROM first_errors
    UNION SELECT run_id FROM pairs UNION SELECT run_id FROM sft_selection
)
ORDER BY started_at, run_id;
