"""Curation commands: segment, localize, localize-eval, negatives, reweight, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from flows.cli_common import (
    BAD_INPUT,
    _bars,
    _fail,
    _open_reader,
    _open_writer,
    _override,
    _progress_factory,
    _rich_table,
    _settings,
    app,
    out,
)
from flows.export import export_datasets, push_to_hub
from flows.localize import (
    annotated_summary,
    localize_consensus,
    localize_judge,
    localize_monte_carlo,
    localize_prm,
    rollout_policy,
    segment_pending,
)
from flows.negatives import build_negatives, reweight
from pipeline.backends import LazyBackend, make_backend
from pipeline.localize import METHODS
from pipeline.metrics import processbench_f1
from pipeline.negatives import KINDS
from pipeline.verify import VerifyPool


@app.command()
def segment(ctx: typer.Context) -> None:
    """Split every trace that has no steps yet (\\[segment] mode, min_chars, max_steps).

    blank: paragraphs between blank lines; markers: a step at each "Step k:"
    line. Fragments under min_chars join a neighbour; traces with more than
    max_steps steps are cut into that many pieces of similar token length.
    Step lists that came with imported data are kept as given.
    """
    settings = _settings(ctx)
    with _open_writer(settings, "segment") as store, _bars() as bars:
        n = segment_pending(store, settings, _progress_factory(bars))
        store.close("ok", {"segmented": n})
    out.print(f"segmented {n} traces")


@app.command()
def localize(
    ctx: typer.Context,
    method: Annotated[
        str | None, typer.Option(help=f"{' | '.join(METHODS)} (default: \\[localize] method).")
    ] = None,
    k: Annotated[int | None, typer.Option(help="Rollouts per probed prefix.")] = None,
    limit: Annotated[int, typer.Option(help="Localize at most this many traces (0: all).")] = 0,
    source: Annotated[
        list[str] | None, typer.Option(help="Only traces of problems from this source.")
    ] = None,
) -> None:
    """Find the first wrong step of every verified trace (0-based, -1: none).

    mc-binary (OmegaPRM binary search) and mc-linear (Math-Shepherd, every
    prefix) roll out k continuations per probed prefix with the \\[localize]
    policy (default: the teacher); rollouts are stored and reused, so a rerun
    or another method never pays twice. judge asks an LLM critic (ProcessBench
    prompt, majority of judge_n); prm scores steps with a process reward model;
    annotated labels come with `import-traces --label-col`; consensus keeps a
    label where the two \\[localize] consensus methods agree.
    """
    settings = _settings(ctx)
    method = method or settings.localize.method
    if method not in METHODS:
        raise _fail(f"unknown method {method!r}; use {', '.join(METHODS)}", BAD_INPUT)
    if k:
        settings.localize.k = k
    loc, teacher = settings.localize, settings.teacher
    if method == "prm" and not loc.prm_model:
        raise _fail("method prm needs \\[localize] prm_model", BAD_INPUT)
    sources = list(source or [])
    with _open_writer(settings, f"localize {method}") as store, _bars() as bars:
        progress = _progress_factory(bars)
        segment_pending(store, settings, progress)
        options = teacher.model_dump(exclude={"backend", "model"})
        kind = loc.backend or teacher.backend

        def lazy(model: str) -> LazyBackend:  # nothing left to localize: no model loaded
            return LazyBackend(model, lambda: make_backend(kind, model, **options))

        if method in ("mc-binary", "mc-linear"):
            backend = lazy(loc.model or teacher.model)
            with VerifyPool(settings.verify.workers, settings.verify.timeout_s) as pool:
                summary = localize_monte_carlo(
                    store,
                    method,
                    rollout_policy(backend, settings),
                    pool,
                    settings,
                    sources=sources,
                    limit=limit,
                    progress=progress,
                )
        elif method == "judge":
            critic = lazy(loc.judge_model or loc.model or teacher.model)
            summary = localize_judge(
                store, critic, settings, sources=sources, limit=limit, progress=progress
            )
        elif method == "prm":
            from pipeline.localize.prm import PRMScorer

            scorer = PRMScorer(
                loc.prm_model,
                loc.prm_separator,
                loc.prm_threshold,
                trust_remote_code=loc.prm_trust_remote_code,
            )
            summary = localize_prm(
                store, scorer, settings, sources=sources, limit=limit, progress=progress
            )
        elif method == "consensus":
            summary = localize_consensus(store, settings)
        else:
            summary = annotated_summary(store)
        store.close("ok", summary.as_dict())
    table = Table("result", "traces", title=f"localize {method}", title_justify="left")
    for kind, n in sorted(summary.labels.items()):
        table.add_row(kind, str(n))
    out.print(table)
    if method in ("mc-binary", "mc-linear"):
        out.print(
            f"rollouts: {summary.rollouts_used:,} used, {summary.rollouts_generated:,} generated "
            f"(the rest reused from the store)"
        )
    for key, value in summary.detail.items():
        out.print(f"{key.replace('_', ' ')}: {value}")


@app.command("localize-eval")
def localize_eval(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="The labels to score.")],
    truth: Annotated[str, typer.Option(help="The reference labels (e.g. annotated).")] = (
        "annotated"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """ProcessBench F1 of one method's first errors against reference labels, per source.

    Accuracy on erroneous traces (exact index) and on all-correct ones (-1),
    and their harmonic mean; a trace the method left undetermined counts as wrong.
    """
    settings = _settings(ctx)
    with _open_reader(settings) as store:
        pairs = store.stage("localization_pairs", {"method": method, "truth": truth})
    if pairs.height == 0:
        raise _fail(f"no traces with {truth!r} labels", BAD_INPUT)
    rows = []
    groups = [(s, g) for (s,), g in pairs.group_by("source", maintain_order=True)]
    for name, g in [*groups, ("all", pairs)]:
        score = processbench_f1(g["label"].to_list(), g["prediction"].to_list())
        rows.append({"source": name, **score.as_dict()})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    out.print(_rich_table(pl.DataFrame(rows), 0))


@app.command()
def negatives(
    ctx: typer.Context,
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kinds", help=f"{' | '.join(KINDS)}; repeatable (default: \\[negatives])."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="Whose first errors to use (default: \\[localize] method).")
    ] = None,
) -> None:
    """Build preference pairs and per-step values from wrong traces into `pairs`.

    outcome: first correct vs first incorrect per problem (REDI); step:
    Step-DPO (prefix before the first error, a correct next step vs the wrong
    one); first-pit: a correct solution vs the wrong trace cut at its first pit
    (Setlur et al.); stepwise: per-step labels, values and advantages.
    """
    settings = _settings(ctx)
    chosen = [k for item in kinds or settings.negatives.kinds for k in item.split(",")]
    bad = [k for k in chosen if k not in KINDS]
    if bad:
        raise _fail(f"unknown kind {bad[0]!r}; use {', '.join(KINDS)}", BAD_INPUT)
    if method:
        settings.negatives.method = method
    with _open_writer(settings, "negatives") as store:
        summary = build_negatives(store, settings, chosen)
        store.close("ok", {"built": summary.built, "skipped": summary.skipped})
    table = Table("kind", "new rows", "skipped", title="negatives", title_justify="left")
    for kind in chosen:
        skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped[kind].items()) or "-"
        table.add_row(kind, str(summary.built[kind]), skipped)
    out.print(table)


@app.command("reweight")
def reweight_command(
    ctx: typer.Context,
    select: Annotated[
        str | None, typer.Option(help="all | uniform | prop2diff (default: \\[reweight]).")
    ] = None,
    weight: Annotated[str | None, typer.Option(help="none | fail_rate.")] = None,
    model: Annotated[str, typer.Option(help="Only traces of this model.")] = "",
) -> None:
    """Choose the correct traces for SFT per problem (DART) and weight them.

    uniform keeps the first \\[dart] k_u per problem; prop2diff keeps
    max(1, ceil(k_p * f / max f)), f the fail rate; fail_rate weights grow with
    f and average 1. The recipe is written to `sft_selection`, replacing its
    previous rows.
    """
    settings = _settings(ctx)
    _override(settings.reweight, select=select, weight=weight)
    with _open_writer(settings, "reweight") as store:
        selection = reweight(store, settings, model)
        store.close("ok", {"selected": selection.height})
    if selection.height == 0:
        out.print("no correct traces to select")
        return
    out.print(
        f"recipe {settings.reweight.select}/{settings.reweight.weight}: "
        f"{selection.height} traces from {selection['problem_id'].n_unique()} problems, "
        f"weights {selection['weight'].min():.3f}..{selection['weight'].max():.3f} "
        f"(mean {selection['weight'].mean():.3f})"
    )


@app.command()
def export(
    ctx: typer.Context,
    out_dir: Annotated[
        Path | None, typer.Option("--dir", help="Output folder (default: \\[export] dir).")
    ] = None,
    push: Annotated[
        bool, typer.Option(help="Upload to \\[export] hub_repo (token: HF_TOKEN or hf login).")
    ] = False,
) -> None:
    """Write TRL-ready datasets in Hub layout: sft, outcome, step, first_pit, stepwise.

    Each config is a Parquet split under its own folder, with a README.md
    dataset card listing them; `datasets.load_dataset(folder, config)` reads it.
    """
    settings = _settings(ctx)
    if out_dir:
        settings.export.dir = out_dir
    with _open_reader(settings) as store:
        written = export_datasets(store, settings)
    table = Table(
        "config", "rows", "file", title=f"export to {settings.export.dir}", title_justify="left"
    )
    for e in written:
        table.add_row(e.config, f"{e.rows:,}", str(e.path))
    out.print(table)
    if push:
        try:
            out.print(f"pushed: {push_to_hub(settings)}")
        except ValueError as exc:
            raise _fail(str(exc), BAD_INPUT) from None
