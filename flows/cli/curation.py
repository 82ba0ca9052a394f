"""Curation commands: segment, localize, localize-eval, negatives, reweight, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from flows.cli.common import (
    BAD_INPUT,
    _bars,
    _context,
    _fail,
    _open_reader,
    _open_writer,
    _override,
    _rich_table,
    _settings,
    out,
)
from pipeline.stages import export as export_stage
from pipeline.stages import localize as localize_stage
from pipeline.stages import negatives as negatives_stage
from pipeline.stages import reweight as reweight_stage
from pipeline.stages import segment as segment_stage
from pipeline.stages.localize import METHODS
from pipeline.stages.negatives import KINDS


def segment(ctx: typer.Context) -> None:
    """Split every trace that has no steps yet (\\[segment] mode, min_chars, max_steps).

    blank: paragraphs between blank lines; markers: a step at each "Step k:"
    line. Fragments under min_chars join a neighbour; traces with more than
    max_steps steps are cut into that many pieces of similar token length.
    Step lists that came with imported data are kept as given.
    """
    settings = _settings(ctx)
    with _open_writer(settings, "segment") as store, _bars() as bars:
        result = segment_stage.run(_context(settings, store, bars))
        store.close("ok", result.as_dict())
    out.print(f"segmented {result.rows_out} traces")


def localize(
    ctx: typer.Context,
    method: Annotated[
        str | None,
        typer.Option(
            help=f"{' | '.join(METHODS)} (default: \\[localize] method).", show_default=False
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(help="Rollouts per probed prefix.")] = None,
    limit: Annotated[int, typer.Option(help="Localize at most this many traces (0: all).")] = 0,
    source: Annotated[
        list[str] | None, typer.Option(help="Only traces of problems from this source.")
    ] = None,
) -> None:
    """Find the first wrong step of every trace judged wrong (0-based, -1: none).

    Truncated and answerless traces are left out and counted (their steps may
    all be fine); \\[localize] admit takes them in, probing the full trace like
    any prefix.

    mc-binary (OmegaPRM binary search) and mc-linear (Math-Shepherd, every
    prefix) roll out k continuations per probed prefix with the \\[localize]
    policy (default: the teacher); rollouts are stored and reused, so a rerun
    or another method never pays twice. judge asks an LLM critic (ProcessBench
    prompt, majority of judge_n); prm scores steps with a process reward model;
    annotated labels come with `import-traces --label-col`; consensus keeps a
    label where the two \\[localize] consensus methods agree.
    """
    settings = _override(ctx, localize={"method": method, "k": k})
    loc = settings.localize
    if loc.method == "prm" and not loc.prm_model:
        raise _fail("method prm needs \\[localize] prm_model", BAD_INPUT)
    with _open_writer(settings, f"localize {loc.method}") as store, _bars() as bars:
        with _context(settings, store, bars, sources=tuple(source or ()), limit=limit) as stages:
            segment_stage.run(stages)
            result = localize_stage.run(stages)
        store.close("ok", result.as_dict())
    table = Table("result", "traces", title=f"localize {loc.method}", title_justify="left")
    for kind, n in sorted(result.detail["labels"].items()):
        table.add_row(kind, str(n))
    out.print(table)
    if "rollouts_used" in result.detail:
        out.print(
            f"rollouts: {result.detail['rollouts_used']:,} used, {result.rollouts:,} generated "
            f"(the rest reused from the store)"
        )
    if "unparseable_answers" in result.detail:
        out.print(f"unparseable answers: {result.detail['unparseable_answers']}")
    for why, n in result.skipped.items():
        out.print(f"{why}: {n}")


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
        rows = localize_stage.scores(store, method, truth)
    if not rows:
        raise _fail(f"no traces with {truth!r} labels", BAD_INPUT)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    out.print(_rich_table(pl.DataFrame(rows), 0))


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
    chosen = [k for item in kinds for k in item.split(",")] if kinds else None
    settings = _override(ctx, negatives={"kinds": chosen, "method": method})
    with _open_writer(settings, "negatives") as store:
        result = negatives_stage.run(_context(settings, store))
        store.close("ok", result.as_dict())
    table = Table("kind", "new rows", "skipped", title="negatives", title_justify="left")
    for kind, new in result.detail["built"].items():
        skipped = result.detail["skipped"][kind]
        table.add_row(kind, str(new), ", ".join(f"{n} {why}" for why, n in skipped.items()) or "-")
    out.print(table)


def reweight_command(
    ctx: typer.Context,
    select: Annotated[
        str | None,
        typer.Option(help="all | uniform | prop2diff | first (default: \\[reweight])."),
    ] = None,
    weight: Annotated[str | None, typer.Option(help="none | fail_rate.")] = None,
    model: Annotated[str, typer.Option(help="Only traces of this model.")] = "",
) -> None:
    """Choose the correct traces for SFT per problem (DART) and weight them.

    uniform keeps the first \\[dart] k_u per problem; prop2diff keeps
    max(1, ceil(k_p * f / max f)); first keeps the first correct generation
    (REDI's SFT set). f is the problem's fail rate over its first \\[dart]
    warmup_n samples, frozen as in sampling; fail_rate weights grow with f and
    average 1. Problems are taken per sampling setup (\\[reweight] per). The
    recipe is written to `sft_selection`, replacing its previous rows.
    """
    settings = _override(ctx, reweight={"select": select, "weight": weight})
    with _open_writer(settings, "reweight") as store:
        result = reweight_stage.run(_context(settings, store, model=model))
        store.close("ok", result.as_dict())
    if result.rows_out == 0:
        out.print("no correct traces to select")
        return
    d = result.detail
    out.print(
        f"recipe {d['recipe']}: {result.rows_out} traces from {d['problems']} problems, "
        f"weights {d['weight min']:.3f}..{d['weight max']:.3f} (mean {d['weight mean']:.3f})"
    )


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
    settings = _override(ctx, export={"dir": out_dir})
    with _open_reader(settings) as store:
        result = export_stage.run(_context(settings, store))
    table = Table(
        "config", "rows", "file", title=f"export to {settings.export.dir}", title_justify="left"
    )
    for (config, rows), path in zip(
        result.detail["configs"].items(), result.detail["files"], strict=True
    ):
        table.add_row(config, f"{rows:,}", path)
    out.print(table)
    for reason in result.skipped:
        out.print(f"  {reason}", highlight=False, markup=False)
    if push:
        try:
            out.print(f"pushed: {export_stage.push_to_hub(settings)}")
        except ValueError as exc:
            raise _fail(str(exc), BAD_INPUT) from None


COMMANDS = {
    "segment": segment,
    "localize": localize,
    "localize-eval": localize_eval,
    "negatives": negatives,
    "reweight": reweight_command,
    "export": export,
}
