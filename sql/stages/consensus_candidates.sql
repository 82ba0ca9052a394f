-- Traces labelled by both $first and $second (and not yet by consensus), with both labels.
SELECT a.trace_id, a.first_error AS first_label, b.first_error AS second_label
FROM first_errors a
JOIN first_errors b ON b.trace_id = a.trace_id AND b.method = $second
WHERE a.method = $first
  AND a.trace_id NOT IN (SELECT trace_id FROM first_errors WHERE method = 'consensus')
ORDER BY a.trace_id;
