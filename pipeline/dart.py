"""DART-Math difficulty-aware allocation (Tong et al. 2024), as pure functions.

Counters come from the store (trials and correct answers per problem for one
model + sampling params), so a killed run resumes where it stopped.

- ``fixed``: n trials per problem (vanilla rejection sampling).
- ``uniform``: sample until every problem has ``k_u`` correct answers.
- ``prop2diff``: target_i = max(1, ceil(k_p * f_i / max_j f_j)) correct
  answers, f_i the fail rate of problem i over its warm-up trials (its first
  ``warmup_n`` samples), so hard problems get more. DART measures difficulty
  once: later rounds change no f_i, so no target moves and no finished problem
  reopens. Quotas are computed in exact fractions (10 * 0.3 is not 3 in floats).

Every problem stops at its target or at the trial cap ``n_max``. Truncated
generations count as wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import polars as pl

from pipeline.config import DartSettings

STRATEGIES = ("fixed", "uniform", "prop2diff")


_D = DartSettings()  # the defaults live in the settings, declared once


@dataclass(frozen=True)
class DartPlan:
    strategy: str = _D.strategy
    k_u: int = _D.k_u
    k_p: int = _D.k_p
    n_fixed: int = _D.n_fixed  # fixed: trials per problem
    n_max: int = _D.n_max
    round_size: int = _D.round_size  # samples per problem per round
    warmup_n: int = _D.warmup_n  # prop2diff: trials per problem before difficulty is measured

    @classmethod
    def from_settings(cls, dart) -> DartPlan:
        """The plan ``[dart]`` describes."""
        d = dart
        return cls(d.strategy, d.k_u, d.k_p, d.n_fixed, d.n_max, d.round_size, d.warmup_n)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown DART strategy {self.strategy!r}; use {', '.join(STRATEGIES)}"
            )


def quotas(trials: list[int], correct: list[int], k_p: int) -> list[int]:
    """max(1, ceil(k_p * f_i / max f)) with f_i = 1 - correct_i / trials_i, exactly."""
    fail = [Fraction(n - k, n) if n else Fraction(0) for n, k in zip(trials, correct, strict=True)]
    worst = max(fail, default=Fraction(0))
    if worst == 0:
        return [1] * len(fail)
    return [max(1, -(-(k_p * f) // worst)) for f in fail]  # ceil, in integers


def targets(counters: pl.DataFrame, plan: DartPlan) -> pl.DataFrame:
    """Add ``target`` (correct answers wanted; for ``fixed``, trials) to per-problem
    counters (problem_id, n_trials, n_correct, warmup_trials, warmup_correct; the
    last two count the problem's first ``warmup_n`` samples). prop2diff targets are
    null until every problem has finished its warm-up."""
    if plan.strategy == "fixed":
        return counters.with_columns(target=pl.lit(plan.n_fixed, pl.Int64))
    if plan.strategy == "uniform":
        return counters.with_columns(target=pl.lit(plan.k_u, pl.Int64))
    warm = min(plan.warmup_n, plan.n_max)
    if counters.height == 0 or counters["n_trials"].min() < warm:
        return counters.with_columns(target=pl.lit(None, pl.Int64))
    target = quotas(
        counters["warmup_trials"].to_list(), counters["warmup_correct"].to_list(), plan.k_p
    )
    return counters.with_columns(target=pl.Series(target, dtype=pl.Int64))


def status(counters: pl.DataFrame, plan: DartPlan) -> pl.DataFrame:
    """Targets plus pass/fail rates and a status: sampling / done / capped / unsolved."""
    with_targets = targets(counters, plan)
    reached = (
        pl.col("n_trials") >= pl.col("target")
        if plan.strategy == "fixed"
        else pl.col("n_correct") >= pl.col("target")
    )
    return with_targets.with_columns(
        pass_rate=pl.when(pl.col("n_trials") > 0).then(pl.col("n_correct") / pl.col("n_trials")),
        fail_rate=pl.when(pl.col("n_trials") > 0).then(
            1 - pl.col("n_correct") / pl.col("n_trials")
        ),
        status=pl.when(pl.col("target").is_not_null() & reached)
        .then(pl.lit("done"))
        .when(pl.col("n_trials") >= plan.n_max)
        .then(
            pl.when(pl.col("n_correct") == 0).then(pl.lit("unsolved")).otherwise(pl.lit("capped"))
        )
        .otherwise(pl.lit("sampling")),
    )


def allocate(counters: pl.DataFrame, plan: DartPlan) -> pl.DataFrame:
    """Samples to draw this round per problem (problem_id, first_index, n); only
    problems still sampling, never past the cap. Before prop2diff's targets are
    known, the round tops every problem up to its warm-up."""
    st = status(counters, plan)
    todo = st.filter(pl.col("status") == "sampling")
    warming = plan.strategy == "prop2diff" and st["target"].null_count() > 0
    if warming:
        want = pl.min_horizontal(
            pl.lit(plan.warmup_n) - pl.col("n_trials"), pl.lit(plan.n_max) - pl.col("n_trials")
        )
    elif plan.strategy == "fixed":
        want = pl.min_horizontal(
            pl.col("target") - pl.col("n_trials"),
            pl.lit(plan.round_size),
            pl.lit(plan.n_max) - pl.col("n_trials"),
        )
    else:
        want = pl.min_horizontal(pl.lit(plan.round_size), pl.lit(plan.n_max) - pl.col("n_trials"))
    return (
        todo.with_columns(n=want)
        .filter(pl.col("n") > 0)
        .select("problem_id", pl.col("n_trials").alias("first_index"), "n")
    )
