-- Every problem set some model was evaluated on.
SELECT DISTINCT problem_set FROM eval_problems ORDER BY problem_set;
