-- Verified traces and pass rate per problem (truncated and timed-out traces count as wrong).
SELECT t.problem_id,
       count(*)                                        AS verified,
       count(*) FILTER (WHERE v.status = 'correct')    AS correct,
       round(avg((v.status = 'correct')::INTEGER), 4)  AS pass_rate
FROM traces t
JOIN verdicts v USING (trace_id)
GROUP BY t.problem_id
ORDER BY pass_rate, t.problem_id;
