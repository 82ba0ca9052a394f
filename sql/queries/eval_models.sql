-- Every evaluation side by side, per problem set: the model, how pitfall trained it (kind and base model from its lineage), temperature, problems, samples, pass@1 with its standard error over problems, mean completion tokens and the share of samples truncated.
-- eval_pass_at_k has pass@k per level; this is one line per model and set.
WITH per_problem AS (
    SELECT s.eval_id, ep.problem_set, s.problem_id,
           count(*)                                       AS n,
           count(*) FILTER (WHERE s.status = 'correct')   AS c,
           count(*) FILTER (WHERE s.status = 'truncated') AS truncated,
           sum(s.completion_tokens)                       AS tokens
    FROM eval_samples s
    JOIN eval_problems ep USING (problem_id)
    GROUP BY ALL
)
SELECT e.model,
       json_extract_string(e.lineage, '$.kind')         AS trained_as,
       json_extract_string(e.lineage, '$.base_model')   AS base_model,
       json_extract(e.params, '$.temperature')::DOUBLE  AS temperature,
       pp.problem_set,
       count(*)                                         AS problems,
       sum(pp.n)::BIGINT                                AS samples,
       round(avg(pp.c / pp.n), 4)                       AS "pass@1",
       round(coalesce(stddev_samp(pp.c / pp.n), 0) / sqrt(count(*)), 4) AS "se@1",
       round(sum(pp.tokens) / sum(pp.n), 1)             AS mean_tokens,
       round(sum(pp.truncated) / sum(pp.n), 4)          AS truncated_share,
       e.eval_id
FROM per_problem pp
JOIN evals e USING (eval_id)
GROUP BY e.eval_id, e.model, e.lineage, e.params, pp.problem_set
ORDER BY pp.problem_set, "pass@1" DESC, e.model, e.eval_id;
