"""Training signal from wrong traces: preference pairs and per-step values.

Input is one frame of traces (``negative_sources.sql``: trace_id, problem_id,
prompt, completion, sample_index, status, correct, starts, ends, step_texts,
first_error, localized), in sample order per problem. Pairs only ever join traces that
share a prompt, so chosen and rejected continue the same text.

* ``outcome`` (REDI / DPO): per problem the first correct and the first
  incorrect trace; with m > 1, the i-th correct with the i-th incorrect.
* ``step`` (Step-DPO): prompt = trace prompt + the prefix before the first
  wrong step, rejected = that step, chosen = the first step of a rollout from
  the same prefix that reached the gold answer, else the next step of a correct
  trace sharing the prefix; skipped (and counted) when neither exists.
* ``first-pit`` (Setlur et al.): chosen = a full correct solution, rejected =
  the wrong trace cut after its first pit, the first step where the value V_i
  (i steps kept; V_M = 0 for a wrong trace) drops to its minimum. V_i is, as
  in the paper, the success of best-of-K continuations (``[negatives]
  best_of``, K = 5), estimated from the prefix's k rollouts with the unbiased
  pass@K estimator 1 - C(k - c, K) / C(k, K); the mean success rate c / k is
  kept beside it.
* No pair of any kind has chosen equal to rejected (up to whitespace): such a
  pair teaches nothing and is dropped, counted as "chosen equals rejected".
* ``stepwise``: TRL stepwise supervision (prompt, completions = steps, labels)
  with best-of-K values, mean values and advantages A_i = V_{i+1} - V_i
  (0-based step i, best-of-K values) in ``meta``. Labels agree with the
  trace's first-error label: True before the first error, False from it on;
  a trace without one is labelled from its values as mc-linear would (alive:
  at least ``alive_threshold`` successful rollouts).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import polars as pl

from pipeline.config import LocalizeSettings, NegativesSettings, SegmentSettings
from pipeline.passk import pass_at_k
from pipeline.rows import PAIR_SCHEMA, pair_row
from pipeline.segment import budget_share, first_step

_N, _S, _L = NegativesSettings(), SegmentSettings(), LocalizeSettings()


@dataclass
class Built:
    rows: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=PAIR_SCHEMA)

    def add(self, pair: dict) -> None:
        if _norm(pair["chosen"]) == _norm(pair["rejected"]):
            self.skipped["chosen equals rejected"] += 1
        else:
            self.rows.append(pair)


def _groups(traces: pl.DataFrame) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in traces.iter_rows(named=True):
        groups[(r["problem_id"], r["prompt"])].append(r)
    return groups


def outcome_pairs(traces: pl.DataFrame, per_problem: int = _N.pairs_per_problem) -> Built:
    built = Built()
    for (problem_id, prompt), rows in _groups(traces).items():
        good = [r for r in rows if r["correct"]]
        bad = [r for r in rows if not r["correct"]]
        if not good or not bad:
            built.skipped["no correct trace" if not good else "no incorrect trace"] += 1
            continue
        # the i-th correct with the i-th incorrect; an incorrect trace with the same
        # text as its correct partner is passed over (counted), not the pair slot
        rank, j = 0, 0
        for c in good:
            if rank == per_problem:
                break
            while j < len(bad) and _norm(bad[j]["completion"]) == _norm(c["completion"]):
                built.skipped["chosen equals rejected"] += 1
                j += 1
            if j == len(bad):
                break
            w, j, rank = bad[j], j + 1, rank + 1
            built.add(
                pair_row(
                    "outcome",
                    problem_id,
                    prompt,
                    c["completion"],
                    w["completion"],
                    c["trace_id"],
                    w["trace_id"],
                    {"rank": rank - 1},
                    c["trace_id"],
                    w["trace_id"],
                )
            )
    return built


def step_pairs(
    traces: pl.DataFrame,
    correct_rollouts: pl.DataFrame,
    segment_mode: str = _S.mode,
    min_chars: int = _S.min_chars,
    max_steps: int | None = _S.max_steps,
) -> Built:
    """``correct_rollouts``: trace_id, prefix_len, policy, rollout_index, completion.

    A rollout's first step is cut by the rule that cut the rejected step: a
    paragraph when the trace kept its paragraphs, else a run of paragraphs of the
    trace's tokens-per-step share (one step of a 320-paragraph trace cut to 32 is
    ~10 paragraphs, and so is the chosen side), so the pair carries no length bias
    and the "repeats the wrong step" guard compares like with like."""
    built = Built()
    continuations: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in correct_rollouts.iter_rows(named=True):
        continuations[(r["trace_id"], r["prefix_len"])].append(r)
    for (problem_id, prompt), rows in _groups(traces).items():
        good = [r for r in rows if r["correct"] and r["step_texts"]]
        for w in rows:
            if w["correct"]:
                continue
            why = _no_first_error(w)
            if why:
                built.skipped[why] += 1
                continue
            e = w["first_error"]
            prefix = w["completion"][: w["starts"][e]]
            rejected = w["step_texts"][e]
            chosen, meta, same = None, {"first_error": e}, False
            share = budget_share(w["completion"], segment_mode, min_chars, max_steps)
            # a correct continuation that repeats the "wrong" step says the label is
            # doubtful for that step; such candidates are passed over, and counted
            for ro in continuations.get((w["trace_id"], e), []):
                step = first_step(ro["completion"], segment_mode, min_chars, share)
                if step and _norm(step) == _norm(rejected):
                    same = True
                elif step:
                    chosen = step
                    meta.update(
                        chosen_from="rollout", policy=ro["policy"], rollout=ro["rollout_index"]
                    )
                    break
            if chosen is None:
                for c in good:
                    if len(c["step_texts"]) > e and _same(c["step_texts"][:e], w["step_texts"][:e]):
                        if _norm(c["step_texts"][e]) == _norm(rejected):
                            same = True
                            continue
                        chosen = c["step_texts"][e]
                        meta.update(chosen_from="trace", chosen_trace=c["trace_id"])
                        break
            if chosen is None:
                reason = "correct continuations repeat the wrong step" if same else None
                built.skipped[reason or "no correct continuation"] += 1
                continue
            chosen_id = meta.get("chosen_trace")
            built.add(
                pair_row(
                    "step",
                    problem_id,
                    prompt + prefix,
                    chosen,
                    rejected,
                    chosen_id,
                    w["trace_id"],
                    meta,
                    w["trace_id"],
                    e,
                )
            )
    return built


def best_of(k: int, n_correct: int, K: int) -> float:
    """P(at least one of K continuations succeeds) from k rollouts with n_correct
    successes: the unbiased pass@K estimator when k >= K, else the plug-in
    1 - (1 - c/k)^K."""
    if k >= K:
        return float(pass_at_k(k, n_correct, K))
    return 1.0 - (1.0 - n_correct / k) ** K


@dataclass(frozen=True)
class PrefixValues:
    """V_0..V_M of one wrong trace (V_0: None unless the empty prefix was probed)."""

    best: list[float | None]  # success of best-of-K continuations: what pits and advantages use
    mean: list[float | None]  # share of the prefix's rollouts that reached the answer
    alive: list[bool | None]  # at least alive_threshold successful rollouts


def prefix_values(
    values: pl.DataFrame,
    n_steps: dict[str, int],
    K: int = _N.best_of,
    threshold: int = _L.alive_threshold,
) -> dict[str, PrefixValues]:
    """Values per wrong trace from ``values`` (trace_id, policy, prefix_len, k,
    n_correct): one policy that covers every prefix 1..M-1 (the first such, by policy
    id); V_M = 0 (the trace's own answer is wrong) unless the full trace was probed
    (a truncated or answerless trace admitted to localization)."""
    by: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for tid, policy, p, k, c in values.select(
        "trace_id", "policy", "prefix_len", "k", "n_correct"
    ).iter_rows():
        by[(tid, policy)][p] = (k, c)
    out: dict[str, PrefixValues] = {}
    for (tid, _policy), vs in sorted(by.items()):
        m = n_steps.get(tid)
        if m is None or tid in out or any(p not in vs for p in range(1, m)):
            continue
        counts = [vs.get(p) for p in range(m + 1)]
        if counts[m] is None:
            counts[m] = (1, 0)  # its own answer is wrong: dead
        out[tid] = PrefixValues(
            best=[None if kc is None else best_of(kc[0], kc[1], K) for kc in counts],
            mean=[None if kc is None else kc[1] / kc[0] for kc in counts],
            alive=[None if kc is None else kc[1] >= threshold for kc in counts],
        )
    return out


def first_pit_pairs(traces: pl.DataFrame, values: dict[str, PrefixValues]) -> Built:
    built = Built()
    for (problem_id, prompt), rows in _groups(traces).items():
        good = next((r for r in rows if r["correct"]), None)
        for w in rows:
            if w["correct"] or not w["step_texts"]:
                continue
            v = values.get(w["trace_id"])
            if v is None:
                built.skipped["no step values (run mc-linear)"] += 1
                continue
            if good is None:
                built.skipped["no correct solution"] += 1
                continue
            if w.get("localized") and w["first_error"] == -1:
                built.skipped["no wrong step found"] += 1
                continue
            after = v.best[1:]  # V_1..V_M: the value after each step
            pit = after.index(min(after))
            if v.alive[pit + 1]:  # a trace cut short whose every prefix stays alive
                built.skipped["no pit: every prefix stays alive"] += 1
                continue
            built.add(
                pair_row(
                    "first-pit",
                    problem_id,
                    prompt,
                    good["completion"],
                    w["completion"][: w["ends"][pit]],
                    good["trace_id"],
                    w["trace_id"],
                    {"pit": pit, "values": v.best, "mean_values": v.mean},
                    good["trace_id"],
                    w["trace_id"],
                    pit,
                )
            )
    return built


def stepwise_rows(
    traces: pl.DataFrame, values: dict[str, PrefixValues], K: int = _N.best_of
) -> Built:
    built = Built()
    for r in traces.iter_rows(named=True):
        if r["correct"] or not r["step_texts"]:
            continue
        v = values.get(r["trace_id"])
        if v is None:
            built.skipped["no step values (run mc-linear)"] += 1
            continue
        best, m = v.best, len(r["step_texts"])
        advantages = [
            None if best[i] is None else round(best[i + 1] - best[i], 6) for i in range(m)
        ]
        localized = r.get("localized", r["first_error"] is not None)
        if localized and r["first_error"] is None:
            built.skipped["first error undetermined"] += 1  # the method declined to say
            continue
        e, labels_from = r["first_error"], "first error"
        if not localized:  # no label to agree with: mc-linear's, from the values
            dead = [p for p in range(1, m + 1) if not v.alive[p]]
            e, labels_from = (dead[0] - 1 if dead else -1), "values"
        meta = {
            "completions": list(r["step_texts"]),
            "labels": [e < 0 or i < e for i in range(m)],
            "labels_from": labels_from,
            "values": best,
            "value": f"best of {K}",  # what values and advantages are
            "mean_values": v.mean,
            "advantages": advantages,
        }
        built.rows.append(
            pair_row(
                "stepwise",
                r["problem_id"],
                r["prompt"],
                None,
                None,
                None,
                r["trace_id"],
                meta,
                r["trace_id"],
                json.dumps(v.mean),
            )
        )
    return built


def _no_first_error(w: dict) -> str | None:
    """Why a wrong trace has no first wrong step to pair, or None when it has one."""
    e = w["first_error"]
    if not w["step_texts"]:
        return "no steps (not segmented)"
    if not w.get("localized", e is not None):
        if w.get("status") in ("truncated", "no_answer"):  # left out of localization
            return f"{w['status']} (not localized)"
        return "not localized by the method"
    if e is None:
        return "first error undetermined"
    if e < 0:
        return "no wrong step found"
    return None


def _norm(text: str) -> str:
    return " ".join(text.split())


def _same(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(_norm(x) == _norm(y) for x, y in zip(a, b, strict=True))
