"""Data in: `pitfall ingest` (problems) and `pitfall import-traces` (existing generations)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flows.cli.common import (
    BAD_INPUT,
    _context,
    _fail,
    _open_writer,
    _settings,
    err,
    out,
)
from flows.cli.options import (
    AnswerCol,
    Format,
    Hf,
    HfConfig,
    IdCol,
    PresetOpt,
    ProblemCol,
    SolutionCol,
    SourceName,
    Split,
)
from pipeline.ingest import ColumnMap, column_map
from pipeline.readers import FORMATS, Record, SourceError, read_file, read_hf
from pipeline.stages import Source
from pipeline.stages import ingest as ingest_stage
from pipeline.stages.ingest import TraceColumns, source_name


def _counting(records: Iterable[Record], label: str) -> Iterator[Record]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"reading {label}", total=None)
        for rec in records:
            progress.advance(task)
            yield rec


def _columns(preset, problem_col, answer_col, solution_col, id_col) -> ColumnMap:
    try:
        return column_map(
            preset.value if preset else None,
            problem=problem_col,
            answer=answer_col,
            solution=solution_col,
            id=id_col,
        )
    except ValueError as exc:
        raise _fail(str(exc), BAD_INPUT) from None


def _sources(files, hf, split, hf_config, fmt, source, columns: ColumnMap) -> tuple[Source, ...]:
    """One Source per input, counted as it is read; opening is deferred so a bad
    file fails inside the stage."""
    if not files and not hf:
        raise _fail("give files or --hf DATASET", BAD_INPUT)
    opens: list[tuple[str, Callable[[], Iterable[Record]]]] = [
        (source or source_name(f), lambda f=f: read_file(f, fmt)) for f in files or []
    ]
    if hf:
        opens.append((source or hf, lambda: read_hf(hf, split, hf_config)))
    return tuple(
        Source(name, lambda name=name, o=o: _counting(o(), name), columns) for name, o in opens
    )


# ------------------------------------------------------------------- ingest


def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help=f"Problem files: {', '.join(FORMATS)} (by extension, or --format).",
            show_default=False,
        ),
    ] = None,
    hf: Hf = None,
    split: Split = None,
    hf_config: HfConfig = None,
    preset: PresetOpt = None,
    problem_col: ProblemCol = None,
    answer_col: AnswerCol = None,
    solution_col: SolutionCol = None,
    id_col: IdCol = None,
    fmt: Format = None,
    source: SourceName = None,
) -> None:
    """Load problems with gold answers into the store.

    Text is normalized (Unicode NFC, whitespace) and each problem is keyed by a
    hash of its text and answer, so ingesting again adds only what is new. Bad
    rows (missing or empty fields, wrong types, absurd lengths, lines that do not
    decode) go to the quarantine table with their reason; they never stop the run.
    """
    settings = _settings(ctx)
    columns = _columns(preset, problem_col, answer_col, solution_col, id_col)
    sources = _sources(files, hf, split, hf_config, fmt, source, columns)
    with _open_writer(settings, "ingest") as store:
        try:
            result = ingest_stage.run(_context(settings, store, inputs=sources))
        except SourceError as exc:
            raise _fail(str(exc), BAD_INPUT) from None
        store.close("ok", result.as_dict())
    per_source = result.detail["sources"]
    table = Table(title=f"ingest into {settings.store.path}", title_justify="left")
    for col in ("source", "taken", "skipped", "quarantined"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in per_source:
        table.add_row(s["source"], str(s["taken"]), str(s["skipped"]), str(s["quarantined"]))
    out.print(table)
    _warn_quarantined(per_source)


def _warn_quarantined(per_source: list[dict]) -> None:
    """The reasons rows went to quarantine, per source (ingest and import-traces)."""
    bad = [s for s in per_source if s["quarantined"]]
    if bad:
        total = sum(s["quarantined"] for s in bad)
        err.print(
            f"[yellow]warning:[/yellow] {total} bad row(s) went to quarantine:", highlight=False
        )
        for s in bad:
            for reason, rows in s["reasons"].items():
                err.print(f"  {s['source']}: {rows} x {reason}", highlight=False, markup=False)
        err.print("  see them with: pitfall sql quarantine", highlight=False)


# ------------------------------------------------------------ import-traces


def import_traces(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(help=f"Files with generations: {', '.join(FORMATS)}.", show_default=False),
    ] = None,
    generations_col: Annotated[
        str,
        typer.Option(
            help="Column holding one completion or a list of them (OpenR1-Math-Raw: generations)."
        ),
    ] = "generations",
    correctness_col: Annotated[
        list[str] | None,
        typer.Option(
            help="Per-generation correctness list (e.g. correctness_math_verify), stored as verdicts of "
            "verifier 'imported:COL'. Repeatable."
        ),
    ] = None,
    steps_col: Annotated[
        str | None,
        typer.Option(
            help="Column holding one generation as a list of steps (ProcessBench: steps); "
            "the steps are kept as given. Replaces --generations-col."
        ),
    ] = None,
    label_col: Annotated[
        str | None,
        typer.Option(
            help="Column with the first wrong step (-1: none; ProcessBench: label) or per-step "
            "ratings (PRM800K-style, the first negative one); stored as method 'annotated'."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model name recorded with the traces (default: imported:SOURCE)."),
    ] = None,
    model_col: Annotated[
        str | None,
        typer.Option(help="Column naming the model of each row (ProcessBench: generator)."),
    ] = None,
    hf: Hf = None,
    split: Split = None,
    hf_config: HfConfig = None,
    preset: PresetOpt = None,
    problem_col: ProblemCol = None,
    answer_col: AnswerCol = None,
    solution_col: SolutionCol = None,
    id_col: IdCol = None,
    fmt: Format = None,
    source: SourceName = None,
) -> None:
    """Import existing generations as traces, with their problems.

    Each source row is a problem with one completion or a list of them, e.g.
    OpenR1-Math-Raw. Run `pitfall verify` afterwards; REDI's recipe (first
    correct vs first incorrect per problem) then needs no sampling.

    ProcessBench: --preset processbench --steps-col steps --label-col label
    --correctness-col final_answer_correct --model-col generator.
    """
    settings = _settings(ctx)
    columns = _columns(preset, problem_col, answer_col, solution_col, id_col)
    sources = _sources(files, hf, split, hf_config, fmt, source, columns)
    spec = TraceColumns(
        generations_col, model, tuple(correctness_col or ()), steps_col, label_col, model_col
    )
    with _open_writer(settings, "import-traces") as store:
        try:
            result = ingest_stage.import_traces(_context(settings, store, inputs=sources), spec)
        except SourceError as exc:
            raise _fail(str(exc), BAD_INPUT) from None
        store.close("ok", result.as_dict())
    per_source = result.detail["sources"]
    columns_shown = [c for c in per_source[0] if c != "reasons"] if per_source else []
    table = Table(
        *columns_shown, title=f"import-traces into {settings.store.path}", title_justify="left"
    )
    for s in per_source:
        table.add_row(*(str(s[c]) for c in columns_shown))
    out.print(table)
    _warn_quarantined(per_source)


COMMANDS = {
    "ingest": ingest,
    "import-traces": import_traces,
}
