-- Problem texts for the problems in $ids.
SELECT problem_id, problem FROM problems WHERE list_contains($ids, problem_id);
