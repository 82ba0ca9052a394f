-- DART reweighting for the SFT export: which correct traces a recipe keeps,
-- and with what weight. A recipe is recomputed as a whole.
-- key: recipe + trace
CREATE TABLE IF NOT EXISTS sft_selection (
    selection_id  VARCHAR PRIMARY KEY,
    recipe        VARCHAR NOT NULL,     -- selection/weighting, e.g. prop2diff/fail_rate
    trace_id      VARCHAR NOT NULL,
    problem_id    VARCHAR NOT NULL,
    rank          INTEGER NOT NULL,     -- 0-based among the problem's kept correct traces
    fail_rate     DOUBLE,
    weight        DOUBLE NOT NULL,      -- mean 1 over the recipe
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);
