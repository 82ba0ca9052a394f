-- Rows of pair kind $kind, in a stable order, with their metadata.
SELECT prompt, chosen, rejected, meta, problem_id, chosen_trace_id, rejected_trace_id
FROM pairs
WHERE kind = $kind
ORDER BY problem_id, pair_id;
