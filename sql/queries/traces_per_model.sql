-- Traces per model and origin, with mean completion length in tokens.
SELECT model, origin,
       count(*)                          AS traces,
       count(DISTINCT problem_id)        AS problems,
       round(avg(completion_tokens), 1)  AS mean_completion_tokens
FROM traces
GROUP BY model, origin
ORDER BY traces DESC;
