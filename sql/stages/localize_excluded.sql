-- Traces with an outcome no localization takes (not in $admitted: a truncated
-- or answerless trace unless [localize] admit lists it, a timeout, an error),
-- by outcome; $sources limits the problems when non-empty.
SELECT o.status, count(*) AS n
FROM traces t
JOIN trace_outcomes($verifier) o USING (trace_id)
JOIN problems p USING (problem_id)
WHERE NOT list_contains($admitted, o.status)
  AND (len($sources) = 0 OR list_contains($sources, p.source))
GROUP BY 1
ORDER BY 1;
