-- Every quarantined input row, newest first, with its reason.
SELECT stage, source, locator, reason, left(raw, 200) AS raw, created_at
FROM quarantine
ORDER BY created_at DESC, source, locator;
