"""Negatives: preference pairs and per-step values from wrong traces, into ``pairs``.

Pair kinds are registered in :data:`KINDS` (name -> builder); the settings,
the CLI's choices and help and the docs read that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from pipeline import negatives as neg
from pipeline.stages.base import StageContext, StageResult
from pipeline.verify import VERIFIER


@dataclass
class Inputs:
    """What the builders read: the traces with their labels, and what some kinds need."""

    ctx: StageContext
    traces: pl.DataFrame
    wrong_ids: list[str]
    _values: dict | None = None

    def values(self) -> dict:
        """Per wrong trace, the MC value of each prefix (first-pit, stepwise)."""
        if self._values is None:
            wrong = self.traces.filter(~pl.col("correct") & pl.col("step_texts").is_not_null())
            n_steps = {t: len(s) for t, s in wrong.select("trace_id", "step_texts").iter_rows()}
            raw = self.ctx.store.stage(
                "trace_values", {"ids": self.wrong_ids, "min_k": self.ctx.settings.localize.k}
            )
            self._values = neg.prefix_values(
                raw,
                n_steps,
                self.ctx.settings.negatives.best_of,
                self.ctx.settings.localize.alive_threshold,
            )
        return self._values


@dataclass(frozen=True)
class Kind:
    build: Callable[[Inputs], neg.Built]
    help: str


def _outcome(x: Inputs) -> neg.Built:
    return neg.outcome_pairs(x.traces, x.ctx.settings.negatives.pairs_per_problem)


def _step(x: Inputs) -> neg.Built:
    rollouts = x.ctx.store.stage("correct_rollouts", {"ids": x.wrong_ids})
    s = x.ctx.settings.segment
    return neg.step_pairs(x.traces, rollouts, s.mode, s.min_chars, s.max_steps)


KINDS: dict[str, Kind] = {
    "outcome": Kind(_outcome, "first correct vs first incorrect trace per problem (REDI)"),
    "step": Kind(_step, "Step-DPO: a correct next step vs the first wrong one"),
    "first-pit": Kind(
        lambda x: neg.first_pit_pairs(x.traces, x.values()),
        "a correct solution vs the wrong trace cut at its first pit",
    ),
    "stepwise": Kind(
        lambda x: neg.stepwise_rows(x.traces, x.values(), x.ctx.settings.negatives.best_of),
        "per-step labels, MC values and advantages (TRL stepwise supervision)",
    ),
}


def first_errors_from(ctx: StageContext) -> str:
    """Whose first errors step and first-pit pairs use."""
    return ctx.settings.negatives.method or ctx.settings.localize.method


def run(ctx: StageContext) -> StageResult:
    traces = ctx.store.stage(
        "negative_sources", {"verifier": VERIFIER, "method": first_errors_from(ctx)}
    )
    inputs = Inputs(ctx, traces, traces.filter(~pl.col("correct"))["trace_id"].to_list())
    result = StageResult("negatives", rows_in=traces.height, detail={"built": {}, "skipped": {}})
    for kind in ctx.settings.negatives.kinds:
        built = KINDS[kind].build(inputs)
        new = ctx.store.insert_new("pairs", built.frame()).inserted
        result.rows_out += new
        result.detail["built"][kind] = new
        result.detail["skipped"][kind] = dict(built.skipped)
        result.skipped.update({f"{kind}: {why}": n for why, n in built.skipped.items()})
    return result
