-- Problems per source, with how many carry a reference solution.
SELECT source,
       count(*)                 AS problems,
       count(solution)          AS with_solution,
       min(created_at)          AS first_ingested
FROM problems
GROUP BY source
ORDER BY problems DESC, source;
