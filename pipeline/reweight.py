"""DART reweighting for SFT: which correct traces to keep per problem, and their weight.

Selection (DART-Math): ``all`` correct traces, ``uniform`` (the first k_u per
problem) or ``prop2diff`` (the first max(1, ceil(k_p * f_i / max f)) per
problem, f_i its fail rate), first by sample index. Weighting: ``none``
(1 each) or ``fail_rate``: w proportional to f_i + floor, scaled so the kept rows
average 1, so harder problems count more without easy ones vanishing.
"""

from __future__ import annotations

import polars as pl

from pipeline.config import DartSettings, ReweightSettings
from pipeline.dart import DartPlan, targets
from pipeline.rows import SELECTION_SCHEMA, selection_key


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
    floor: float = _R.weight_floor,
) -> pl.DataFrame:
    """``traces``: problem_id, trace_id, sample_index, correct (one sampling setup)."""
    if select not in ("all", "uniform", "prop2diff"):
        raise ValueError(f"unknown selection {select!r}; use all, uniform or prop2diff")
    if weight not in ("none", "fail_rate"):
        raise ValueError(f"unknown weighting {weight!r}; use none or fail_rate")
    recipe = recipe_name(select, weight)
    if traces.height == 0:
        return pl.DataFrame(schema=SELECTION_SCHEMA)
    counters = traces.group_by("problem_id").agg(
        n_trials=pl.len(), n_correct=pl.col("correct").sum()
    )
    if select == "all":
        quota = counters.with_columns(target=pl.col("n_correct"))
    else:
        plan = DartPlan(select, k_u=k_u, k_p=k_p, warmup_n=1)
        quota = targets(counters, plan)
    quota = quota.with_columns(fail_rate=1.0 - pl.col("n_correct") / pl.col("n_trials"))
    kept = (
        traces.filter(pl.col("correct"))
        .sort("problem_id", "sample_index", "trace_id")
        .with_columns(rank=pl.int_range(pl.len()).over("problem_id").cast(pl.Int32))
        .join(quota.select("problem_id", "target", "fail_rate"), on="problem_id")
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
