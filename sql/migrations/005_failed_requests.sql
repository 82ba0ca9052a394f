-- Sampling requests that wrote no trace because the server could not answer
-- them (HTTP 400, an answer still malformed after the retries), with the
-- reason. A failed request keeps none of its samples, so the problem's sample
-- indices stay contiguous and the next run asks for the same first_index with
-- the same seed; a row per run that failed it.
-- key: problem + model + params + first_index + n + run
CREATE TABLE IF NOT EXISTS failed_requests (
    failure_id   VARCHAR PRIMARY KEY,
    problem_id   VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    params_id    VARCHAR NOT NULL,
    first_index  INTEGER NOT NULL,      -- the request's first sample index
    n            INTEGER NOT NULL,      -- samples it asked for
    reason       VARCHAR NOT NULL,      -- e.g. "HTTP 400: ...", "invalid response: no choices"
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);
