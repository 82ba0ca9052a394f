-- SFT rows of recipe $recipe: the trace's prompt and completion with its weight.
SELECT t.prompt, t.completion, s.weight, s.problem_id, s.trace_id
FROM sft_selection s
JOIN traces t USING (trace_id)
WHERE s.recipe = $recipe
ORDER BY s.problem_id, s.rank;
