-- DART measures a problem's difficulty once, over its warm-up: its first
-- warmup_n samples. prop2diff targets and reweighting read these counts, so
-- later rounds move no target and reopen no finished problem.
ALTER TABLE difficulty ADD COLUMN IF NOT EXISTS warmup_trials INTEGER;
ALTER TABLE difficulty ADD COLUMN IF NOT EXISTS warmup_correct INTEGER;
