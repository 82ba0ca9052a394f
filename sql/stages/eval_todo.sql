-- The problems of the sets $sets with how many samples evaluation $eval_id
-- already holds for each (samples are numbered from 0 without gaps).
SELECT ep.problem_id,
       any_value(ep.problem) AS problem,
       any_value(ep.answer)  AS answer,
       (SELECT count(*) FROM eval_samples s
        WHERE s.eval_id = $eval_id AND s.problem_id = ep.problem_id) AS have
FROM eval_problems ep
WHERE ep.problem_set IN (SELECT unnest($sets::VARCHAR[]))
GROUP BY ep.problem_id
ORDER BY ep.problem_id;
