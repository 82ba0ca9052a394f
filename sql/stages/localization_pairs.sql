-- For scoring a localization method: the $truth label of every trace that has
-- one, beside $method's prediction (NULL when it made none), with the source.
SELECT p.source, g.trace_id, g.first_error AS label, m.first_error AS prediction
FROM first_errors g
JOIN traces t USING (trace_id)
JOIN problems p USING (problem_id)
LEFT JOIN first_errors m ON m.trace_id = g.trace_id AND m.method = $method
WHERE g.method = $truth AND g.first_error IS NOT NULL
ORDER BY p.source, g.trace_id;
