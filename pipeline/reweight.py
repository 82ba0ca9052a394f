"""DART reweighting for SFT: which correct traces to keep per problem, and their weight.

Selection (DART-Math): ``all`` correct traces, ``uniform`` (the first k_u per
problem), ``prop2diff`` (the first max(1, ceil(k_p * f_i / max f)) per problem)
or ``first`` (the first correct generation per problem: REDI's SFT stage), first
by sample index. Weighting: ``none`` (1 each) or ``fail_rate``: w proportional to
f_i + floor, scaled so the kept rows average 1, so harder problems count more
without easy ones vanishing.

f_i is the problem's frozen difficulty, as in sampling: its fail rate over its
first ``warmup_n`` samples (see :mod:`pipeline.dart`). Every trace with an
outcome is a trial and only ``correct`` counts as correct, as in sampling, so a
timeout counts as a failure in both. Problems are selected per sampling setup
(teacher + sampling parameters): fail rates and ranks never mix temperatures,
teachers or imported traces.
"""

from __future__ import annotations

import polars as pl

from pipeline.config import DartSettings, ReweightSettings
from pipeline.dart import quotas
from pipeline.rows import SELECTION_SCHEMA, selection_key

SELECTIONS = ("all", "uniform", "prop2diff", "first")
WEIGHTINGS = ("none", "fail_rate")


def recipe_name(select: str, weight: str) -> str:
    return f"{select}/{weight}"


_R, _D = ReweightSettings(), DartSettings()


def select_sft(
    traces: pl.DataFrame,
    select: str = _R.select,
    weight: str = _R.weight,
    *,
    k_u: int = _D.k_u,
    k_p: int = _D.k_p,
    warmup_n: int = _D.warmup_n,
    floor: float = _R.weight_floor,
) -> pl.DataFrame:
    """``traces``: setup, problem_id, trace_id, sample_index, correct."""
    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; use {', '.join(SELECTIONS)}")
    if weight not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weight!r}; use {', '.join(WEIGHTINGS)}")
    recipe = recipe_name(select, weight)
    if traces.height == 0:
        return pl.DataFrame(schema=SELECTION_SCHEMA)
    # the warm-up is a problem's first warmup_n samples in its setup: by position, so
    # imported traces whose indices do not start at 0 have one too
    traces = traces.sort("setup", "problem_id", "sample_index", "trace_id").with_columns(
        position=pl.int_range(pl.len()).over("setup", "problem_id")
    )
    warm = pl.col("position") < warmup_n
    counters = (
        traces.group_by("setup", "problem_id")
        .agg(
            n_correct=pl.col("correct").sum(),
            warmup_trials=warm.sum(),
            warmup_correct=(warm & pl.col("correct")).sum(),
        )
        .sort("setup", "problem_id")
        .with_columns(fail_rate=1.0 - pl.col("warmup_correct") / pl.col("warmup_trials"))
    )
    quota = pl.concat(
        [
            _quota(group, select, k_u, k_p)
            for _, group in counters.group_by("setup", maintain_order=True)
        ]
    )
    kept = (
        traces.filter(pl.col("correct"))  # still in sample order from the sort above
        .with_columns(rank=pl.int_range(pl.len()).over("setup", "problem_id").cast(pl.Int32))
        .join(
            quota.select("setup", "problem_id", "target", "fail_rate"), on=["setup", "problem_id"]
        )
        .filter(pl.col("rank") < pl.col("target"))
    )
    if weight == "none" or kept.height == 0:
        kept = kept.with_columns(weight=pl.lit(1.0))
    else:
        raw = kept["fail_rate"] + floor
        kept = kept.with_columns(
            weight=(raw / raw.mean()) if raw.mean() > 0 else pl.lit(1.0)  # all-easy, no floor
        )
    return kept.select(
        selection_id=pl.col("trace_id").map_elements(
            lambda t: selection_key(recipe, t), return_dtype=pl.String
        ),
        recipe=pl.lit(recipe),
        trace_id="trace_id",
        problem_id="problem_id",
        rank="rank",
        fail_rate="fail_rate",
        weight="weight",
    )


def _quota(counters: pl.DataFrame, select: str, k_u: int, k_p: int) -> pl.DataFrame:
    """One setup's correct traces to keep per problem."""
    if select == "all":
        return counters.with_columns(target=pl.col("n_correct"))
    if select == "first":
        return counters.with_columns(target=pl.lit(1))
    if select == "uniform":
        return counters.with_columns(target=pl.lit(k_u))
    target = quotas(counters["warmup_trials"].to_list(), counters["warmup_correct"].to_list(), k_p)
    return counters.with_columns(target=pl.Series(target, dtype=pl.Int64))
