"""Negatives and reweighting wiring: read traces, labels and values; write pairs and selections."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipeline import negatives as neg
from pipeline.config import Settings
from pipeline.reweight import recipe_name, select_sft
from pipeline.store import Store
from pipeline.verify import VERIFIER


@dataclass
class NegativesSummary:
    built: dict[str, int] = field(default_factory=dict)  # kind -> pairs new
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> reason -> n


def build_negatives(store: Store, settings: Settings, kinds: list[str]) -> NegativesSummary:
    method = settings.negatives.method or settings.localize.method
    traces = store.stage("negative_sources", {"verifier": VERIFIER, "method": method})
    summary = NegativesSummary()
    wrong_ids = traces.filter(~pl.col("correct"))["trace_id"].to_list()
    values = None
    if {"first-pit", "stepwise"} & set(kinds):
        n_steps = {
            r["trace_id"]: len(r["step_texts"])
            for r in traces.filter(~pl.col("correct") & pl.col("step_texts").is_not_null())
            .select("trace_id", "step_texts")
            .iter_rows(named=True)
        }
        raw = store.stage("trace_values", {"ids": wrong_ids, "min_k": settings.localize.k})
        values = neg.prefix_values(raw, n_steps)
    for kind in kinds:
        if kind == "outcome":
            built = neg.outcome_pairs(traces, settings.negatives.pairs_per_problem)
        elif kind == "step":
            rollouts = store.stage("correct_rollouts", {"ids": wrong_ids})
            s = settings.segment
            built = neg.step_pairs(traces, rollouts, s.mode, s.min_chars)
        elif kind == "first-pit":
            built = neg.first_pit_pairs(traces, values)
        elif kind == "stepwise":
            built = neg.stepwise_rows(traces, values)
        else:
            raise ValueError(f"unknown negative kind {kind!r}; use {', '.join(neg.KINDS)}")
        summary.built[kind] = store.insert_new("pairs", built.frame()).inserted
        summary.skipped[kind] = dict(built.skipped)
    return summary


def reweight(store: Store, settings: Settings, model: str = "") -> pl.DataFrame:
    """Recompute one recipe's SFT selection; returns it."""
    r, d = settings.reweight, settings.dart
    traces = store.stage("sft_candidates", {"verifier": VERIFIER, "model": model})
    selection = select_sft(traces, r.select, r.weight, k_u=d.k_u, k_p=d.k_p, floor=r.weight_floor)
    store.replace_where("sft_selection", "recipe", recipe_name(r.select, r.weight), selection)
    return selection
