-- Traces whose $verifier verdict has one of $statuses, with their problem's
-- gold answer: verified again on request (pitfall verify --again timeout).
SELECT t.trace_id, t.completion, t.finish_reason, p.answer
FROM traces t
JOIN problems p USING (problem_id)
JOIN verdicts v ON v.trace_id = t.trace_id AND v.verifier = $verifier
WHERE p.answer IS NOT NULL AND list_contains($statuses, v.status)
ORDER BY t.trace_id;
