-- Table macros the stage queries share. Created or replaced every time a writer
-- opens the store (and by migration 004, where they first appeared), so a
-- store always holds the definitions of the pitfall that last wrote it.

-- The settled outcome of every verified trace: the verdict of verifier `v`
-- (math-verify with its version) when there is one, else an imported verdict
-- (imported:COLUMN). Timeouts and errors are returned too; callers keep the
-- statuses they can use.
CREATE OR REPLACE MACRO trace_outcomes(v) AS TABLE
    SELECT trace_id,
           arg_min(status, CASE WHEN verifier = v THEN 0 ELSE 1 END) AS status
    FROM verdicts
    WHERE verifier = v OR verifier LIKE 'imported:%'
    GROUP BY trace_id;
