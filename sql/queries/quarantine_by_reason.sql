-- Quarantined rows counted by stage, source and reason.
SELECT stage, source, reason, count(*) AS rows
FROM quarantine
GROUP BY ALL
ORDER BY rows DESC, source, reason;
