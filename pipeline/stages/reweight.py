"""Reweighting: one DART recipe's choice of correct traces for SFT and their weights."""

from __future__ import annotations

from pipeline.reweight import recipe_name, select_sft
from pipeline.stages.base import StageContext, StageResult
from pipeline.verify import VERIFIER


def run(ctx: StageContext) -> StageResult:
    """Recompute the ``[reweight]`` recipe's ``sft_selection`` rows, replacing its old ones."""
    r, d = ctx.settings.reweight, ctx.settings.dart
    traces = ctx.store.stage(
        "sft_candidates", {"verifier": VERIFIER, "model": ctx.scope.model, "per": r.per}
    )
    selection = select_sft(
        traces,
        r.select,
        r.weight,
        k_u=d.k_u,
        k_p=d.k_p,
        warmup_n=d.warmup_n,
        floor=r.weight_floor,
    )
    recipe = recipe_name(r.select, r.weight)
    ctx.store.replace_where("sft_selection", "recipe", recipe, selection)
    detail = {"recipe": recipe, "problems": selection["problem_id"].n_unique()}
    if selection.height:
        w = selection["weight"]
        detail |= {"weight min": w.min(), "weight max": w.max(), "weight mean": w.mean()}
    return StageResult("reweight", rows_in=traces.height, rows_out=selection.height, detail=detail)
