"""Export: TRL-ready datasets in Hub layout (sft, outcome, step, first_pit, stepwise)."""

from __future__ import annotations

import os

from pipeline import __version__
from pipeline.config import Settings
from pipeline.export import Provenance, preference_rows, stepwise_rows, write_dataset
from pipeline.reweight import recipe_name
from pipeline.stages.base import StageContext, StageResult
from pipeline.stages.negatives import first_errors_from
from pipeline.verify import VERIFIER

PAIR_CONFIGS = {"outcome": "outcome", "step": "step", "first-pit": "first_pit"}


def run(ctx: StageContext) -> StageResult:
    settings, store = ctx.settings, ctx.store
    recipe = recipe_name(settings.reweight.select, settings.reweight.weight)
    tables = {
        "sft": store.stage("export_sft", {"recipe": recipe}).select(
            "prompt", "completion", "weight", "problem_id", "trace_id"
        )
    }
    for kind, config in PAIR_CONFIGS.items():
        tables[config] = preference_rows(store.stage("export_pairs", {"kind": kind}))
    tables["stepwise"] = stepwise_rows(store.stage("export_pairs", {"kind": "stepwise"}))
    written = write_dataset(settings.export.dir, tables, provenance(ctx, recipe))
    result = StageResult(
        "export",
        rows_out=sum(e.rows for e in written),
        detail={
            "dir": str(settings.export.dir),
            "configs": {e.config: e.rows for e in written},
            "files": [str(e.path) for e in written],
        },
    )
    if tables["sft"].height == 0:
        # the recipe comes from [reweight]; `pitfall reweight --select X` alone does not change it
        why = f"no sft rows for recipe {recipe}: pitfall reweight computes it from [reweight]"
        result.skipped[why] = 1
    return result


def provenance(ctx: StageContext, recipe: str) -> Provenance:
    method = first_errors_from(ctx)
    d = ctx.settings.dart
    dart = {"strategy": d.strategy, "n_max": d.n_max, "round_size": d.round_size}
    dart |= {
        "fixed": {"n_fixed": d.n_fixed},
        "uniform": {"k_u": d.k_u},
        "prop2diff": {"k_p": d.k_p, "warmup_n": d.warmup_n},
    }[d.strategy]
    return Provenance(
        teachers=ctx.store.stage("card_teachers").to_dicts(),
        verifier=VERIFIER,
        localization={"method": method}
        | ctx.store.stage("card_localization", {"method": method}).to_dicts()[0],
        dart=dart,
        sft_recipe=recipe,
        runs=ctx.store.stage("card_runs").to_dicts(),
        version=__version__,
    )


def push_to_hub(settings: Settings, api=None) -> str:
    """Upload the export folder to ``[export] hub_repo`` (a dataset repo); the
    token comes from HF_TOKEN or the huggingface-cli login, never from the config."""
    from huggingface_hub import HfApi

    repo = settings.export.hub_repo
    if not repo:
        raise ValueError("no [export] hub_repo to push to")
    api = api or HfApi(token=os.environ.get("HF_TOKEN"))
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo,
        folder_path=str(settings.export.dir),
        repo_type="dataset",
        commit_message="pitfall export",
    )
    return str(getattr(info, "commit_url", info))
