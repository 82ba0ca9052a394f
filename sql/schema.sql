-- pitfall trace store, schema version 1 (the baseline).
--
-- Every row carries a deterministic key: a content hash (pipeline/keys.py) of
-- the parts that define it, listed above each table. Re-running a stage
-- therefore inserts nothing twice, and an interrupted run resumes where it
-- stopped. Every row also records the run that wrote it (runs.run_id).
--
-- Later changes go in sql/migrations/NNN_name.sql (NNN >= 002), applied in
-- order on top of this file and recorded in schema_version.

CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    name        VARCHAR NOT NULL,
    applied_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- one row per flow or CLI run; the lineage of every other row
CREATE TABLE IF NOT EXISTS runs (
    run_id       VARCHAR PRIMARY KEY,     -- uuid4 hex
    command      VARCHAR NOT NULL,        -- e.g. "ingest", "run"
    argv         VARCHAR,
    config       JSON,                    -- the resolved settings
    pid          INTEGER,
    host         VARCHAR,
    version      VARCHAR,                 -- pitfall version
    status       VARCHAR NOT NULL DEFAULT 'running',  -- running / ok / failed / interrupted
    started_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at  TIMESTAMP,
    summary      JSON
);

-- key: normalized problem text + normalized gold answer
CREATE TABLE IF NOT EXISTS problems (
    problem_id  VARCHAR PRIMARY KEY,
    problem     VARCHAR NOT NULL,
    answer      VARCHAR NOT NULL,
    solution    VARCHAR,                  -- reference solution, when the source has one
    source      VARCHAR NOT NULL,         -- file name or dataset name
    source_id   VARCHAR,                  -- the source's own id column, if any
    meta        JSON,                     -- remaining source columns (subject, level, ...)
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: problem, model, sampling params, sample index
CREATE TABLE IF NOT EXISTS traces (
    trace_id           VARCHAR PRIMARY KEY,
    problem_id         VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    params_id          VARCHAR NOT NULL,  -- hash of the sampling params below
    params             JSON,
    sample_index       INTEGER NOT NULL,
    prompt             VARCHAR NOT NULL,  -- the exact text the model saw
    completion         VARCHAR NOT NULL,
    finish_reason      VARCHAR,           -- stop / length / imported / ...
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    latency_s          DOUBLE,
    origin             VARCHAR NOT NULL DEFAULT 'sampled',  -- sampled / imported
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: trace, verifier version
CREATE TABLE IF NOT EXISTS verdicts (
    verdict_id  VARCHAR PRIMARY KEY,
    trace_id    VARCHAR NOT NULL,
    verifier    VARCHAR NOT NULL,         -- verifier name + version
    status      VARCHAR NOT NULL
                CHECK (status IN ('correct', 'wrong', 'no_answer', 'truncated', 'timeout', 'error')),
    extracted   VARCHAR,                  -- the answer pulled out of the completion
    seconds     DOUBLE,
    detail      VARCHAR,
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: trace, step index
CREATE TABLE IF NOT EXISTS steps (
    step_id     VARCHAR PRIMARY KEY,
    trace_id    VARCHAR NOT NULL,
    step_index  INTEGER NOT NULL,         -- 0-based
    text        VARCHAR NOT NULL,
    char_start  INTEGER,                  -- offsets into traces.completion
    char_end    INTEGER,
    n_tokens    INTEGER,
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: trace, prefix length, policy, rollout index
CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id         VARCHAR PRIMARY KEY,
    trace_id           VARCHAR NOT NULL,
    prefix_len         INTEGER NOT NULL,  -- number of steps kept from the trace
    policy             VARCHAR NOT NULL,  -- model + sampling params id
    rollout_index      INTEGER NOT NULL,
    completion         VARCHAR NOT NULL,
    finish_reason      VARCHAR,
    completion_tokens  INTEGER,
    correct            BOOLEAN,
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: trace, prefix length, policy
CREATE TABLE IF NOT EXISTS step_values (
    value_id    VARCHAR PRIMARY KEY,
    trace_id    VARCHAR NOT NULL,
    prefix_len  INTEGER NOT NULL,
    policy      VARCHAR NOT NULL,
    k           INTEGER NOT NULL,         -- rollouts behind the estimate
    n_correct   INTEGER NOT NULL,
    value       DOUBLE NOT NULL,          -- soft estimate n_correct / k
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: trace, method
CREATE TABLE IF NOT EXISTS first_errors (
    first_error_id  VARCHAR PRIMARY KEY,
    trace_id        VARCHAR NOT NULL,
    method          VARCHAR NOT NULL,     -- a localize method: mc-binary, exact, judge, ... (see METHODS)
    first_error     INTEGER,              -- 0-based step index, -1 if none, NULL if undetermined
    n_rollouts      INTEGER,
    rollout_tokens  BIGINT,
    detail          JSON,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: problem (recomputed after every sampling round)
CREATE TABLE IF NOT EXISTS difficulty (
    problem_id  VARCHAR PRIMARY KEY,
    n_trials    INTEGER NOT NULL,
    n_correct   INTEGER NOT NULL,
    pass_rate   DOUBLE,
    fail_rate   DOUBLE,
    target      INTEGER,                  -- DART target of correct answers
    status      VARCHAR,                  -- sampling / done / capped / unsolved
    run_id      VARCHAR NOT NULL,
    updated_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: kind + the rows it was built from
CREATE TABLE IF NOT EXISTS pairs (
    pair_id            VARCHAR PRIMARY KEY,
    kind               VARCHAR NOT NULL,  -- outcome / step / first-pit / stepwise
    problem_id         VARCHAR NOT NULL,
    prompt             VARCHAR NOT NULL,
    chosen             VARCHAR,
    rejected           VARCHAR,
    chosen_trace_id    VARCHAR,
    rejected_trace_id  VARCHAR,
    meta               JSON,
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- key: source + locator + reason
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id  VARCHAR PRIMARY KEY,
    stage          VARCHAR NOT NULL,      -- ingest / import / ...
    source         VARCHAR NOT NULL,      -- file or dataset
    locator        VARCHAR,               -- line number, row index, ...
    reason         VARCHAR NOT NULL,
    raw            VARCHAR,               -- the offending input, truncated
    run_id         VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);
