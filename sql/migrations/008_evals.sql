-- Evaluation (`pitfall eval`). Its problems and samples live in tables of their
-- own, which no curation query reads: an eval trace never becomes training data.

-- one row per evaluation set-up: a model (as its files were) and the sampling
-- parameters; n and the problem set are per sample, so asking for more samples
-- or another set later reuses what is there.
-- key: model fingerprint + sampling params
CREATE TABLE IF NOT EXISTS evals (
    eval_id      VARCHAR PRIMARY KEY,
    model        VARCHAR NOT NULL,      -- the path or Hub id as given
    model_hash   VARCHAR NOT NULL,      -- fingerprint of the model's files
    lineage      JSON,                  -- its pitfall_train.json, when it has one
    params_id    VARCHAR NOT NULL,
    params       JSON,
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- the problems of an evaluation set (problem_id is the curation key of the
-- same text and answer, so overlap with curated problems is one join away)
-- key: problem set + problem
CREATE TABLE IF NOT EXISTS eval_problems (
    eval_problem_id  VARCHAR PRIMARY KEY,
    problem_set      VARCHAR NOT NULL,  -- file or source name
    problem_id       VARCHAR NOT NULL,
    problem          VARCHAR NOT NULL,
    answer           VARCHAR NOT NULL,
    level            VARCHAR,           -- the source's level / difficulty column, if any
    run_id           VARCHAR NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- one verified sample
-- key: eval + problem + sample index
CREATE TABLE IF NOT EXISTS eval_samples (
    sample_id          VARCHAR PRIMARY KEY,
    eval_id            VARCHAR NOT NULL,
    problem_id         VARCHAR NOT NULL,
    sample_index       INTEGER NOT NULL,
    completion         VARCHAR NOT NULL,
    finish_reason      VARCHAR,
    completion_tokens  INTEGER,
    verifier           VARCHAR NOT NULL,
    status             VARCHAR NOT NULL
                       CHECK (status IN ('correct', 'wrong', 'no_answer', 'truncated', 'timeout', 'error')),
    extracted          VARCHAR,
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);
