-- Completion length percentiles (tokens) per model.
SELECT model,
       count(*)                                  AS traces,
       quantile_cont(completion_tokens, 0.5)     AS p50_tokens,
       quantile_cont(completion_tokens, 0.9)     AS p90_tokens,
       quantile_cont(completion_tokens, 0.99)    AS p99_tokens,
       max(completion_tokens)                    AS max_tokens
FROM traces
GROUP BY model
ORDER BY model;
