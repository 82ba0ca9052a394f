-- Traces that have no steps yet.
SELECT t.trace_id, t.completion
FROM traces t
ANTI JOIN (SELECT DISTINCT trace_id FROM steps) s USING (trace_id)
ORDER BY t.trace_id;
