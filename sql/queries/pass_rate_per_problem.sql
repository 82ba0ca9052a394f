-- Verified traces and pass rate per problem (truncated and timed-out traces count as wrong; one outcome per trace, as latest_outcomes() settles it).
SELECT t.problem_id,
       count(*)                                        AS verified,
       count(*) FILTER (WHERE o.status = 'correct')    AS correct,
       round(avg((o.status = 'correct')::INTEGER), 4)  AS pass_rate
FROM traces t
JOIN latest_outcomes() o USING (trace_id)
GROUP BY t.problem_id
ORDER BY pass_rate, t.problem_id;
