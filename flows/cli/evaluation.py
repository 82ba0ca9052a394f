"""`pitfall eval`: pass@k of a model on a problem set, kept apart from curation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import (
    BAD_INPUT,
    _bars,
    _context,
    _fail,
    _open_reader,
    _open_writer,
    _override,
    out,
)
from pipeline.ingest import column_map
from pipeline.readers import read_file
from pipeline.sampling import ServerUnavailable
from pipeline.stages import Source
from pipeline.stages import evaluate as eval_stage
from pipeline.stages.ingest import source_name


def evaluate(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(help="Model folder or Hub id to evaluate (not needed with --compare)."),
    ] = None,
    problems: Annotated[
        str | None,
        typer.Option(
            help="A problem file, or the name of a source already in the store"
            " (default: \\[eval] problems)."
        ),
    ] = None,
    n: Annotated[
        int | None, typer.Option(min=1, help="Samples per problem (default: \\[eval] n).")
    ] = None,
    k: Annotated[
        str | None, typer.Option(help="pass@k for these k, comma-separated (default: 1,4,8).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0, help="Sampling temperature (default: \\[eval]).")
    ] = None,
    greedy: Annotated[
        bool, typer.Option(help="One greedy sample per problem (temperature 0, n 1, pass@1).")
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            help="Print every model evaluated on the problem set side by side, sample nothing."
        ),
    ] = False,
) -> None:
    """Sample a model on a problem set, verify, and report pass@k.

    pass@1 is the mean over the n samples of each problem, pass@k the unbiased
    estimator of Chen et al. (2021); both come with their standard error over
    problems, overall and per level (\\[eval] level_column). Samples go to
    eval_samples, which no curation stage reads. Evaluating the same model
    files with the same sampling parameters again samples only what is missing.
    The same figures: pitfall sql eval_pass_at_k.
    """
    ks = _ks(k)
    if greedy:
        temperature, n, ks = 0.0, 1, [1]
    settings = _override(
        ctx, eval={"problems": problems, "n": n, "k": ks, "temperature": temperature}
    )
    target = settings.eval.problems
    path = Path(target)
    inputs = (
        (Source(source_name(path), lambda: read_file(path), column_map(settings.run.preset)),)
        if path.is_file()
        else ()
    )
    sources = () if inputs else (target,)
    if compare:
        sets = [s.name for s in inputs] or [target]
        with _open_reader(settings) as store:
            table = eval_stage.compare(store, sets, settings.eval.k)
        if table.height == 0:
            raise _fail(escape(f"no model has been evaluated on {', '.join(sets)}"), BAD_INPUT)
        _print(table, settings.eval.k)
        return
    if not model:
        raise _fail("give --model PATH_OR_HUB_ID (or --compare)", BAD_INPUT)
    with _open_writer(settings, "eval") as store, _bars() as bars:
        try:
            with _context(settings, store, bars, inputs=inputs, sources=sources, model=model) as c:
                result = eval_stage.run(c)
        except eval_stage.EvalError as exc:
            store.close("failed", {"error": str(exc)})
            raise _fail(escape(str(exc)), BAD_INPUT) from None
        except ServerUnavailable as exc:
            store.close("failed", {"error": str(exc)})
            raise _fail(
                escape(f"evaluation stopped: {exc}; the samples so far are stored")
            ) from None
        store.close("ok", result.as_dict())
    d = result.detail
    if result.rows_in:
        out.print(
            f"{escape(d['model'])}: {result.rows_out} new samples for {result.rows_in} problems,"
            f" {result.tokens:,} tokens",
            highlight=False,
        )
    else:
        out.print(f"{escape(d['model'])}: evaluated before, nothing new to sample", highlight=False)
    for reason, count in result.skipped.items():
        out.print(f"  {count} × {reason}", highlight=False, markup=False)
    _print(pl.DataFrame(d["pass_at_k"]), settings.eval.k)


def _ks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _fail(f"--k takes comma-separated integers, got {text!r}", BAD_INPUT) from None


def _print(table: pl.DataFrame, ks: list[int]) -> None:
    """A table per problem set: a row per model and level, pass@k ± its standard
    error in percent. A model whose files changed between evaluations shows each
    evaluation's id."""
    for (problem_set,), part in table.group_by(["problem_set"], maintain_order=True):
        evals_per_model = part.group_by("model").agg(pl.col("eval_id").n_unique())
        repeated = set(evals_per_model.filter(pl.col("eval_id") > 1)["model"])
        view = Table(
            "model",
            "level",
            "problems",
            *(f"pass@{k}" for k in ks),
            title=f"{escape(problem_set)}: pass@k in % ± standard error",
            title_justify="left",
        )
        for row in part.iter_rows(named=True):
            name = row["model"] + (f" ({row['eval_id'][:8]})" if row["model"] in repeated else "")
            cells = [escape(name), escape(str(row["level"])), str(row["problems"])]
            for k in ks:
                value, se = row.get(f"pass@{k}"), row.get(f"se@{k}")
                cells.append("-" if value is None else f"{100 * value:.1f}±{100 * se:.1f}")
            view.add_row(*cells)
        out.print(view)


COMMANDS = {"eval": evaluate}
