-- The problems of a source already in the store, as an evaluation set
-- ($source; $level_path: '$.' + the difficulty column in their meta).
SELECT problem_id, problem, answer, json_extract_string(meta, $level_path) AS level
FROM problems
WHERE source = $source AND answer IS NOT NULL
ORDER BY problem_id;
