-- Traces with no verdict from $verifier yet, with their problem's gold answer
-- (problems without a gold answer have nothing to verify against).
SELECT t.trace_id, t.completion, t.finish_reason, p.answer
FROM traces t
JOIN problems p USING (problem_id)
ANTI JOIN (SELECT trace_id FROM verdicts WHERE verifier = $verifier) v USING (trace_id)
WHERE p.answer IS NOT NULL
ORDER BY t.trace_id;
