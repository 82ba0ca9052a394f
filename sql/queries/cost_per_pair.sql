-- Per pair kind: pairs, the wrong traces they came from, the rollouts stored for those traces and their completion tokens (per pair too), and the sampled completion tokens of the pairs' problems per pair.
-- Rollouts are counted once per trace whatever policy or method drew them, so a
-- trace behind a step and a first-pit pair counts in both kinds. Outcome pairs
-- use no rollout: rollouts their traces got for localization are not theirs.
-- sampled_tokens_per_pair: every trace of the problems the kind's pairs come
-- from (imported traces have no token counts).
WITH per_trace AS (
    SELECT trace_id, count(*) AS rollouts, sum(completion_tokens) AS tokens
    FROM rollouts
    GROUP BY trace_id
),
kinds AS (
    SELECT kind,
           count(*)                           AS pairs,
           count(DISTINCT rejected_trace_id)  AS wrong_traces,
           count(DISTINCT problem_id)         AS problems
    FROM pairs
    GROUP BY kind
),
spent AS (
    SELECT d.kind,
           coalesce(sum(r.rollouts), 0)::BIGINT AS rollouts,
           coalesce(sum(r.tokens), 0)::BIGINT   AS rollout_tokens
    FROM (SELECT DISTINCT kind, rejected_trace_id AS trace_id FROM pairs WHERE kind <> 'outcome') d
    LEFT JOIN per_trace r USING (trace_id)
    GROUP BY d.kind
),
sampled AS (
    SELECT d.kind, sum(t.completion_tokens) AS tokens
    FROM (SELECT DISTINCT kind, problem_id FROM pairs) d
    JOIN traces t USING (problem_id)
    GROUP BY d.kind
)
SELECT k.kind, k.pairs, k.wrong_traces, k.problems,
       coalesce(s.rollouts, 0)                            AS rollouts,
       coalesce(s.rollout_tokens, 0)                      AS rollout_tokens,
       round(coalesce(s.rollouts, 0) / k.pairs, 2)        AS rollouts_per_pair,
       round(coalesce(s.rollout_tokens, 0) / k.pairs, 1)  AS rollout_tokens_per_pair,
       round(m.tokens / k.pairs, 1)                       AS sampled_tokens_per_pair
FROM kinds k
LEFT JOIN spent s USING (kind)
LEFT JOIN sampled m USING (kind)
ORDER BY k.kind;
