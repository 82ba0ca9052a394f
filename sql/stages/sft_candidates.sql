-- Every trace with an outcome (verdict of $verifier, else an imported one), for
-- DART selection. As in sampling's counters, each is a trial and only 'correct'
-- is correct (a timeout or an error counts as a failure). $per = 'setup' keeps
-- sampling setups (teacher + sampling parameters) apart, 'teacher' pools a
-- teacher's; $model limits it to one teacher when non-empty.
SELECT CASE WHEN $per = 'teacher' THEN t.model ELSE t.model || ' ' || t.params_id END AS setup,
       t.problem_id, t.trace_id, t.sample_index, o.status = 'correct' AS correct
FROM traces t
JOIN trace_outcomes($verifier) o USING (trace_id)
WHERE ($model = '' OR t.model = $model)
ORDER BY setup, t.problem_id, t.sample_index;
