"""The `pitfall` command line: data in (ingest, import-traces), sample, verify, sql, stats.

Shared plumbing is in ``flows/cli_common.py``; the curation commands (segment,
localize, negatives, reweight) are in ``flows/cli_curate.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.progress import (
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

import flows.cli_curate
import flows.cli_run  # noqa: F401
from flows.cli_common import (
    BAD_INPUT,
    _bars,
    _fail,
    _open_reader,
    _open_writer,
    _progress_factory,
    _rich_table,
    _settings,
    app,
    err,
    out,
)
from flows.ingest import IngestSummary, ingest_records, source_name
from flows.sample import run_sampling, verify_pending
from flows.traces import import_records
from pipeline.backends import make_backend
from pipeline.ingest import PRESETS, ColumnMap, column_map
from pipeline.readers import FORMATS, Record, SourceError, read_file, read_hf
from pipeline.sampling import ServerUnavailable
from pipeline.sqlfiles import canned_queries
from pipeline.store import StoreError
from pipeline.verify import STATUSES, VERIFIER, VerifyPool


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


def _sources(
    files, hf, split, hf_config, fmt, source
) -> list[tuple[str, Callable[[], Iterable[Record]]]]:
    """(name, open) per input; opening is deferred so a bad file fails inside the run."""
    if not files and not hf:
        raise _fail("give files or --hf DATASET", BAD_INPUT)
    sources = [(source or source_name(f), lambda f=f: read_file(f, fmt)) for f in files or []]
    if hf:
        sources.append((source or hf, lambda: read_hf(hf, split, hf_config)))
    return sources


# ------------------------------------------------------------------- ingest


Preset = StrEnum("Preset", {name: name for name in PRESETS})


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help=f"Problem files: {', '.join(FORMATS)} (by extension, or --format).",
            show_default=False,
        ),
    ] = None,
    hf: Annotated[
        str | None,
        typer.Option(
            "--hf", help="A HF dataset: a save_to_disk folder, a local data folder or a Hub name."
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of the --hf dataset.")] = None,
    hf_config: Annotated[
        str | None,
        typer.Option("--config", "--hf-config", help="Configuration (subset) of the --hf dataset."),
    ] = None,
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="Column layout: math (problem/solution/answer, MATH-500), gsm8k (question/answer with "
            "'#### N'), numina (problem/solution with a boxed answer)."
        ),
    ] = None,
    problem_col: Annotated[
        str | None, typer.Option(help="Column with the problem text (default: problem).")
    ] = None,
    answer_col: Annotated[
        str | None, typer.Option(help="Column with the gold answer (default: answer).")
    ] = None,
    solution_col: Annotated[
        str | None, typer.Option(help="Column with a reference solution.")
    ] = None,
    id_col: Annotated[str | None, typer.Option(help="Column with the source's own id.")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help=f"File format when the extension does not say: {'|'.join(FORMATS)}."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Source name recorded with each problem (default: parent/file name)."),
    ] = None,
) -> None:
    """Load problems with gold answers into the store.

    Text is normalized (Unicode NFC, whitespace) and each problem is keyed by a
    hash of its text and answer, so ingesting again adds only what is new. Bad
    rows (missing or empty fields, wrong types, absurd lengths, lines that do not
    decode) go to the quarantine table with their reason; they never stop the run.
    """
    settings = _settings(ctx)
    columns = _columns(preset, problem_col, answer_col, solution_col, id_col)
    sources = _sources(files, hf, split, hf_config, fmt, source)

    summaries: list[IngestSummary] = []
    with _open_writer(settings, "ingest") as store:
        for name, open_records in sources:
            try:
                summaries.append(
                    ingest_records(store, _counting(open_records(), name), name, columns, settings)
                )
            except SourceError as exc:
                raise _fail(str(exc), BAD_INPUT) from None
        store.close(
            "ok",
            {
                s.source: {"taken": s.taken, "skipped": s.skipped, "quarantined": s.quarantined}
                for s in summaries
            },
        )
    _print_ingest(summaries, settings.store.path)


def _print_ingest(summaries: list[IngestSummary], store_path: Path) -> None:
    table = Table(title=f"ingest into {store_path}", title_justify="left")
    for col in ("source", "taken", "skipped", "quarantined"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in summaries:
        table.add_row(s.source, str(s.taken), str(s.skipped), str(s.quarantined))
    out.print(table)
    _warn_quarantined(summaries)


def _warn_quarantined(summaries: list) -> None:
    """The reasons rows went to quarantine, per source (ingest and import summaries)."""
    bad = [s for s in summaries if s.quarantined]
    if bad:
        total = sum(s.quarantined for s in bad)
        err.print(
            f"[yellow]warning:[/yellow] {total} bad row(s) went to quarantine:", highlight=False
        )
        for s in bad:
            for reason, rows in s.reasons.iter_rows():
                err.print(f"  {s.source}: {rows} x {reason}", highlight=False, markup=False)
        err.print("  see them with: pitfall sql quarantine", highlight=False)


# ------------------------------------------------------------ import-traces


@app.command("import-traces")
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
    hf: Annotated[
        str | None,
        typer.Option("--hf", help="A HF dataset: a save_to_disk folder or a data folder."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of the --hf dataset.")] = None,
    hf_config: Annotated[
        str | None,
        typer.Option("--config", "--hf-config", help="Configuration of the --hf dataset."),
    ] = None,
    preset: Annotated[
        Preset | None,
        typer.Option(help="Column layout, as for `pitfall ingest` (processbench: no gold answer)."),
    ] = None,
    problem_col: Annotated[str | None, typer.Option(help="Column with the problem text.")] = None,
    answer_col: Annotated[str | None, typer.Option(help="Column with the gold answer.")] = None,
    solution_col: Annotated[
        str | None, typer.Option(help="Column with a reference solution.")
    ] = None,
    id_col: Annotated[str | None, typer.Option(help="Column with the source's own id.")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"File format: {'|'.join(FORMATS)}.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name (default: parent/file name).")
    ] = None,
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
    sources = _sources(files, hf, split, hf_config, fmt, source)
    table = Table(
        "source",
        "problems new",
        "traces new",
        "traces skipped",
        "verdicts new",
        "steps new",
        "labels new",
        "quarantined",
        title=f"import-traces into {settings.store.path}",
        title_justify="left",
    )
    imported = []
    with _open_writer(settings, "import-traces") as store:
        for name, open_records in sources:
            try:
                s = import_records(
                    store,
                    _counting(open_records(), name),
                    name,
                    columns,
                    generations_col,
                    model or f"imported:{name}",
                    tuple(correctness_col or ()),
                    settings,
                    steps_col=steps_col,
                    label_col=label_col,
                    model_col=model_col,
                )
            except SourceError as exc:
                raise _fail(str(exc), BAD_INPUT) from None
            imported.append(s)
            table.add_row(
                name,
                *(
                    str(v)
                    for v in (
                        s.problems_new,
                        s.traces_new,
                        s.traces_skipped,
                        s.verdicts_new,
                        s.steps_new,
                        s.labels_new,
                        s.quarantined,
                    )
                ),
            )
    out.print(table)
    _warn_quarantined(imported)


def _print_verdicts(counts) -> None:
    table = Table("status", "traces", title=f"verdicts ({VERIFIER})", title_justify="left")
    for status in STATUSES:
        table.add_row(status, str(counts.get(status, 0)))
    out.print(table)


Again = StrEnum("Again", {name: name for name in ("timeout", "error")})


@app.command()
def verify(
    ctx: typer.Context,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: \\[verify] workers).")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="CPU seconds per item before its worker is killed (then one retry)."),
    ] = None,
    again: Annotated[
        list[Again] | None,
        typer.Option(
            help="Instead, verify anew the traces whose verdict has this status, and replace it"
            " (repeatable): e.g. timeouts from a pitfall older than the CPU-time budget."
        ),
    ] = None,
) -> None:
    """Verify every trace that has no verdict yet.

    The final answer is the last \\boxed{} (balanced braces), else an "answer
    is" phrase, else the last number; math-verify checks it against the gold
    answer in worker processes. An item that uses more than the timeout in CPU
    seconds has its worker killed and is retried once on a fresh one before it
    is a timeout, so a busy machine gives the same verdicts as an idle one.
    Statuses: correct, wrong, no_answer, truncated, timeout, error.
    """
    settings = _settings(ctx)
    if workers:
        settings.verify.workers = workers
    if timeout:
        settings.verify.timeout_s = timeout
    with (
        _open_writer(settings, "verify") as store,
        _bars() as bars,
        VerifyPool(settings.verify.workers, settings.verify.timeout_s) as pool,
    ):
        statuses = tuple(a.value for a in again or ())
        counts = verify_pending(store, settings, pool, _progress_factory(bars), statuses)
        store.close("ok", dict(counts))
    _print_verdicts(counts)


@app.command()
def sample(
    ctx: typer.Context,
    backend: Annotated[
        str | None,
        typer.Option(help="vllm | openai | transformers (default: \\[teacher] backend)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model path or name (default: \\[teacher] model).")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Copies of the model, each on its own cores or GPU (default: \\[teacher] replicas).",
        ),
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="DART strategy: fixed | uniform | prop2diff.")
    ] = None,
    k_u: Annotated[
        int | None, typer.Option(help="uniform: correct answers wanted per problem.")
    ] = None,
    k_p: Annotated[
        int | None, typer.Option(help="prop2diff: correct answers for the hardest problem.")
    ] = None,
    n_fixed: Annotated[int | None, typer.Option(help="fixed: trials per problem.")] = None,
    n_max: Annotated[int | None, typer.Option(help="Trial cap per problem.")] = None,
    round_size: Annotated[int | None, typer.Option(help="Samples per problem per round.")] = None,
    max_rounds: Annotated[int | None, typer.Option(help="Stop after this many rounds.")] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only problems from this source (repeatable).")
    ] = None,
) -> None:
    """Sample the teacher in rounds (sample -> verify -> allocate) until DART's targets.

    Counters come from the store, so a killed run picks up where it stopped
    and never samples twice what it has. The difficulty table holds pass rate,
    fail rate, target and status (sampling / done / capped / unsolved).
    """
    settings = _settings(ctx)
    teacher = settings.teacher.model_copy(
        update={
            k: v for k, v in {"backend": backend, "model": model, "replicas": replicas}.items() if v
        }
    )
    dart = {
        "strategy": strategy,
        "k_u": k_u,
        "k_p": k_p,
        "n_fixed": n_fixed,
        "n_max": n_max,
        "round_size": round_size,
        "max_rounds": max_rounds,
    }
    try:
        settings = settings.model_copy(
            update={
                "teacher": teacher,
                "dart": settings.dart.model_validate(
                    {**settings.dart.model_dump(), **{k: v for k, v in dart.items() if v}}
                ),
            }
        )
    except ValueError as exc:
        raise _fail(str(exc), BAD_INPUT) from None
    with _open_writer(settings, "sample") as store:
        engine = make_backend(
            teacher.backend, teacher.model, **teacher.model_dump(exclude={"backend", "model"})
        )
        try:
            with _bars() as bars:
                summary = run_sampling(
                    store, engine, settings, list(source or []), _progress_factory(bars)
                )
        except ServerUnavailable as exc:
            store.close("failed", {"error": str(exc)})
            stored = "finished requests are stored, the next run asks for the rest"
            raise _fail(escape(f"sampling stopped: {exc}; {stored}")) from None
        store.close(
            "ok",
            {
                "rounds": summary.rounds,
                "traces": summary.traces,
                "tokens": summary.completion_tokens,
                "failed_requests": sum(summary.failed.values()),
            },
        )
    _print_sampling(summary)


def _print_sampling(summary) -> None:
    d = summary.difficulty
    out.print(
        f"rounds {summary.rounds}, requests {summary.requests}, new traces {summary.traces}, "
        f"completion tokens {summary.completion_tokens:,}"
    )
    if summary.failed:
        out.print(
            f"[yellow]failed requests {sum(summary.failed.values())}[/yellow]: no traces written"
            " (table failed_requests); the next run asks for them again",
            highlight=False,
        )
        for reason, count in summary.failed.most_common():
            out.print(f"  {count} × {reason}", highlight=False, markup=False)
    _print_verdicts(summary.verdicts)
    if d is not None and d.height:
        by = (
            d.group_by("status")
            .agg(
                pl.len().alias("problems"),
                pl.col("n_trials").sum().alias("trials"),
                pl.col("n_correct").sum().alias("correct"),
            )
            .sort("status")
        )
        out.print(_rich_table(by, 0))


# ---------------------------------------------------------------------- sql


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(
            help="SQL text, a .sql file, or the name of a canned query (see --list).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[OutFormat, typer.Option("--format", help="Output format.")] = OutFormat.table,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown by --format table (0: all).")] = 50,
    list_queries: Annotated[
        bool, typer.Option("--list", help="List the canned queries and exit.")
    ] = False,
) -> None:
    """Run a read-only query against the store.

    The store opens read-only, so nothing here can change it; a run that is
    writing at the same time is waited for between its batches.
    """
    canned = canned_queries()
    if list_queries:
        table = Table(
            "name", "what it answers", title="canned queries (sql/queries/)", title_justify="left"
        )
        for name, path in canned.items():
            table.add_row(name, _first_comment(path))
        out.print(table)
        return
    if not query:
        raise _fail(
            "give a query, a .sql file or a canned query name (pitfall sql --list)", BAD_INPUT
        )
    if query in canned:
        text = canned[query].read_text(encoding="utf-8")
    elif query.endswith(".sql") and Path(query).is_file():
        text = Path(query).read_text(encoding="utf-8")
    else:
        text = query
    if fmt is OutFormat.parquet and out_file is None:
        raise _fail("--format parquet needs --out FILE", BAD_INPUT)

    settings = _settings(ctx)
    try:
        with _open_reader(settings) as store:
            df = store.query(text)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    _write_frame(df, fmt, out_file, limit)


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return ""


def _write_frame(df: pl.DataFrame, fmt: OutFormat, out_file: Path | None, limit: int) -> None:
    if fmt is OutFormat.parquet:
        assert out_file is not None
        df.write_parquet(out_file)
    elif fmt is OutFormat.csv:
        text = _flat(df).write_csv()
    elif fmt is OutFormat.json:
        text = df.write_json()
    if fmt in (OutFormat.csv, OutFormat.json):
        if out_file:
            out_file.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif fmt is OutFormat.table:
        if out_file:
            out_file.write_text(str(df), encoding="utf-8")
        else:
            out.print(_rich_table(df, limit))
    if out_file:
        err.print(f"wrote {df.height} rows to {out_file}", highlight=False)


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: lists and structs become JSON text."""
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    return df.with_columns(
        pl.Series(c, [json.dumps(v, default=str) for v in df[c].to_list()], pl.String)
        for c in nested
    )


# -------------------------------------------------------------------- stats


@app.command()
def stats(ctx: typer.Context) -> None:
    """Rows per table, problems by source and quarantine by reason."""
    settings = _settings(ctx)
    with _open_reader(settings) as store:
        counts = store.table_counts()
        by_source = store.canned("problems_by_source")
        reasons = store.canned("quarantine_by_reason")
        version = store.schema_version()
    table = Table(
        "table", "rows", title=f"{settings.store.path} (schema v{version})", title_justify="left"
    )
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    out.print(table)
    out.print(_rich_table(by_source, 0))
    if reasons.height:
        out.print(_rich_table(reasons, 0))


if __name__ == "__main__":
    app()
