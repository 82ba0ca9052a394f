-- Pairs per kind.
SELECT kind, count(*) AS pairs FROM pairs GROUP BY kind ORDER BY kind;
