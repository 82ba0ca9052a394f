-- Rows that stores made before issue 13 and that are wrong for their method;
-- the next run rebuilds them the right way:
-- * rollouts were credited with numbers from the prefix they continue: the
--   rollout policy id now carries "credit": "continuation", so old rollouts are
--   kept but no longer reused, and the Monte-Carlo labels and values made
--   from them go;
-- * truncated and answerless traces were localized with an invented first
--   error at their last step: their labels (other than imported ones) go;
-- * step pairs compared steps of different sizes, first-pit and stepwise rows
--   used mean values where V_i is the best-of-K success: those pairs go, and
--   so does any pair whose chosen and rejected sides are the same text.
DELETE FROM first_errors WHERE method IN ('mc-binary', 'mc-linear', 'consensus');
DELETE FROM first_errors
WHERE method <> 'annotated'
  AND trace_id IN (SELECT trace_id FROM verdicts WHERE status IN ('truncated', 'no_answer'));
DELETE FROM step_values;
DELETE FROM pairs WHERE kind IN ('step', 'first-pit', 'stepwise') OR chosen = rejected;
