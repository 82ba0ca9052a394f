-- Where the teacher goes wrong: per localization method and level ('all': every level), the labels of traces not verified correct (first error found, none, undetermined), the mean and median first wrong step (0-based) and its mean position in the trace.
-- relative_position = (first_error + 1) / steps: 1.0 is the last step. Traces
-- without a correct outcome only: Monte-Carlo methods give correct traces -1
-- for free, which says nothing about mistakes. Outcome as in pass_rate_by_level.
WITH outcome AS (SELECT * FROM latest_outcomes()),
n_steps AS (
    SELECT trace_id, count(*) AS steps FROM steps GROUP BY trace_id
),
labels AS (
    SELECT f.method,
           json_extract_string(p.meta, '$.level') AS level,
           f.first_error,
           s.steps
    FROM first_errors f
    JOIN traces t USING (trace_id)
    JOIN problems p USING (problem_id)
    LEFT JOIN outcome o USING (trace_id)
    LEFT JOIN n_steps s USING (trace_id)
    WHERE o.status IS DISTINCT FROM 'correct'
),
leveled AS (
    SELECT * FROM labels WHERE level IS NOT NULL
    UNION ALL
    SELECT * REPLACE ('all' AS level) FROM labels
)
SELECT method, level,
       count(*)                                          AS labelled,
       count(*) FILTER (WHERE first_error >= 0)          AS found,
       count(*) FILTER (WHERE first_error = -1)          AS no_error,
       count(*) FILTER (WHERE first_error IS NULL)       AS undetermined,
       count(*) FILTER (WHERE first_error = 0)           AS at_step_0,
       round(avg(first_error) FILTER (WHERE first_error >= 0), 2)    AS mean_step,
       median(first_error) FILTER (WHERE first_error >= 0)           AS median_step,
       round(avg((first_error + 1) / steps) FILTER (WHERE first_error >= 0), 3)
                                                         AS relative_position,
       round(avg(steps), 1)                              AS mean_steps
FROM leveled
GROUP BY method, level
ORDER BY method, level = 'all', level;
