-- Completion length per model and outcome ('unverified': no verdict yet): tokens (median, p90, max), mean characters and mean steps; imported traces have no token counts.
-- Outcome as in pass_rate_by_level. length_percentiles gives the tokens per
-- model alone.
WITH outcome AS (SELECT * FROM latest_outcomes()),
n_steps AS (
    SELECT trace_id, count(*) AS steps FROM steps GROUP BY trace_id
)
SELECT t.model,
       coalesce(o.status, 'unverified')            AS outcome,
       count(*)                                    AS traces,
       quantile_cont(t.completion_tokens, 0.5)     AS p50_tokens,
       quantile_cont(t.completion_tokens, 0.9)     AS p90_tokens,
       max(t.completion_tokens)                    AS max_tokens,
       round(avg(length(t.completion)), 1)         AS mean_chars,
       round(avg(s.steps), 2)                      AS mean_steps
FROM traces t
LEFT JOIN outcome o USING (trace_id)
LEFT JOIN n_steps s USING (trace_id)
GROUP BY ALL
ORDER BY t.model, outcome;
