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

-- pass@k of one problem with n samples of which c are correct: the unbiased
-- estimator of Chen et al. (2021), 1 - C(n-c, k)/C(n, k), as the product
-- 1 - prod_{i=n-c+1..n} (1 - k/i). NULL where it is undefined (k > n).
-- pipeline/passk.py computes the same in exact fractions (a test compares).
CREATE OR REPLACE MACRO pass_at_k(n, c, k) AS
    CASE WHEN k < 1 OR k > n OR c < 0 OR c > n THEN NULL
         WHEN n - c < k THEN 1.0
         WHEN c = 0 THEN 0.0
         ELSE 1.0 - list_reduce(list_transform(range(n - c + 1, n + 1), lambda i: 1.0 - k / i),
                                lambda a, b: a * b)
    END;


-- Every verified trace's outcome without naming a verifier version, for the
-- canned queries (which take no parameters): its math-verify verdict, the
-- latest when several versions judged it, else an imported one; with the
-- answer it extracted (NULL for imported verdicts).
CREATE OR REPLACE MACRO latest_outcomes() AS TABLE
    SELECT trace_id, status, extracted
    FROM verdicts
    QUALIFY row_number() OVER (
        PARTITION BY trace_id
        ORDER BY verifier NOT LIKE 'math-verify%', created_at DESC, verifier
    ) = 1;
