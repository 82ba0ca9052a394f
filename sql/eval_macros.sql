-- Table macros over the evaluation tables (migration 008). Apart from
-- macros.sql because migration 004 creates those before these tables exist;
-- created by migration 009 and, like macros.sql, on every writer open.

-- Samples (n) and correct samples (c) per evaluation, problem set, level and
-- problem, for the problem sets in `sets`. Samples belong to a problem, not to
-- a set, so an evaluation counts under every set holding problems it sampled;
-- the set's problems it did not sample count with n = 0, which leaves its
-- pass@k blank there instead of a mean over the part it happened to sample.
CREATE OR REPLACE MACRO eval_problem_counts(sets) AS TABLE
    WITH sampled AS (
        SELECT eval_id, problem_id,
               count(*)                                   AS n,
               count(*) FILTER (WHERE status = 'correct') AS c
        FROM eval_samples
        GROUP BY ALL
    ),
    evaluated AS (
        SELECT DISTINCT s.eval_id, ep.problem_set
        FROM sampled s
        JOIN eval_problems ep USING (problem_id)
        WHERE list_contains(sets, ep.problem_set)
    )
    SELECT e.eval_id, e.model, ep.problem_set, ep.level, ep.problem_id,
           coalesce(s.n, 0) AS n, coalesce(s.c, 0) AS c
    FROM evaluated v
    JOIN evals e USING (eval_id)
    JOIN eval_problems ep ON ep.problem_set = v.problem_set
    LEFT JOIN sampled s ON s.eval_id = v.eval_id AND s.problem_id = ep.problem_id;
