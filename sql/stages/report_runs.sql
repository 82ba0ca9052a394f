-- Every command that wrote the store, oldest first, with its per-stage summary.
SELECT run_id, command, status, version, started_at, finished_at,
       date_diff('millisecond', started_at, finished_at) / 1000.0 AS seconds, summary
FROM runs
ORDER BY started_at, run_id;
