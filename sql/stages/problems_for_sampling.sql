-- Problem texts and gold answers for the problems in $ids.
SELECT problem_id, problem, answer FROM problems WHERE list_contains($ids, problem_id);
