-- Labels that came with imported data (method 'annotated'), with the problem's source.
SELECT f.trace_id, f.first_error, p.source
FROM first_errors f
JOIN traces t USING (trace_id)
JOIN problems p USING (problem_id)
WHERE f.method = 'annotated'
ORDER BY p.source, f.trace_id;
