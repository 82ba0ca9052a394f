-- pass@1, pass@4 and pass@8 (Chen et al.'s unbiased estimator) with their standard errors over problems, per evaluated model, problem set and level ('all': the whole set); null where a problem has fewer than k samples. Same figures as `pitfall eval --compare`.
WITH per_problem AS (
    SELECT * FROM eval_problem_counts((SELECT list(DISTINCT problem_set) FROM eval_problems))
),
leveled AS (
    SELECT * FROM per_problem WHERE level IS NOT NULL
    UNION ALL
    SELECT * REPLACE ('all' AS level) FROM per_problem
)
SELECT model, eval_id, problem_set, level,
       count(*) AS problems,
       sum(n)   AS samples,
       CASE WHEN min(n) >= 1 THEN avg(pass_at_k(n, c, 1)) END                            AS "pass@1",
       CASE WHEN min(n) >= 1 THEN coalesce(stddev_samp(pass_at_k(n, c, 1)), 0) / sqrt(count(*)) END   AS "se@1",
       CASE WHEN min(n) >= 4 THEN avg(pass_at_k(n, c, 4)) END                            AS "pass@4",
       CASE WHEN min(n) >= 4 THEN coalesce(stddev_samp(pass_at_k(n, c, 4)), 0) / sqrt(count(*)) END   AS "se@4",
       CASE WHEN min(n) >= 8 THEN avg(pass_at_k(n, c, 8)) END                            AS "pass@8",
       CASE WHEN min(n) >= 8 THEN coalesce(stddev_samp(pass_at_k(n, c, 8)), 0) / sqrt(count(*)) END   AS "se@8"
FROM leveled
GROUP BY model, eval_id, problem_set, level
ORDER BY model, eval_id, problem_set, level = 'all', level;
