-- Who wrote the traces: model and sampling parameters, with traces and tokens.
SELECT model, params, origin, count(*) AS traces, sum(completion_tokens) AS tokens
FROM traces
GROUP BY ALL
ORDER BY traces DESC, model;
