-- Traces with no verdict from $verifier yet, with their problem's gold answer.
SELECT t.trace_id, t.completion, t.finish_reason, p.answer
FROM traces t
JOIN problems p USING (problem_id)
ANTI JOIN (SELECT trace_id FROM verdicts WHERE verifier = $verifier) v USING (trace_id)
ORDER BY t.trace_id;
