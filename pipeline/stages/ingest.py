"""Data in: problems with gold answers (the ``ingest`` stage), and existing
generations as traces (`pitfall import-traces`, not a flow stage).

Records are normalized and written in rounds, so memory does not follow the
file size; bad rows go to quarantine with their reason and never stop a stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.import_traces import to_traces
from pipeline.ingest import IngestLimits, column_map, to_problems
from pipeline.readers import chunked, read_file
from pipeline.stages.base import Source, StageContext, StageResult
from pipeline.store import InsertResult

# Records per round. Each round opens the DuckDB file, so smaller rounds cost
# CPU, and a reader waits for one round at most. A 70 MB JSONL peaked at 664 MB
# read whole and ~505 MB in rounds of 5,000 (the rest is imports and DuckDB's
# cache); a trace row carries whole generations, so import-traces takes fewer
# (822 MB whole, ~600 MB in rounds of 1,000).
PROBLEM_ROUND = 5_000
TRACE_ROUND = 1_000
# what each import round writes, in this order: a trace's problem goes in before it
TRACE_TABLES = ("problems", "traces", "verdicts", "steps", "first_errors", "quarantine")


@dataclass(frozen=True)
class TraceColumns:
    """Where import-traces finds generations and what it records with them."""

    generations: str = "generations"
    model: str | None = None  # default: imported:SOURCE
    correctness: tuple[str, ...] = ()
    steps: str | None = None
    label: str | None = None
    model_col: str | None = None


def source_name(path: Path) -> str:
    """``math500/test.jsonl`` rather than ``test.jsonl``: many benchmarks name their files alike."""
    parts = path.resolve().parts
    return "/".join(parts[-2:])


def run_inputs(ctx: StageContext) -> tuple[Source, ...]:
    """The command's inputs, else ``[run] inputs`` with ``[run] preset``."""
    if ctx.scope.inputs:
        return ctx.scope.inputs
    columns = column_map(ctx.settings.run.preset)
    return tuple(
        Source(source_name(Path(name)), lambda p=Path(name): read_file(p), columns)
        for name in ctx.settings.run.inputs
    )


def limits(ctx: StageContext) -> IngestLimits:
    return IngestLimits.from_settings(ctx.settings.problems)


def run(ctx: StageContext) -> StageResult:
    result = StageResult("ingest", detail={"sources": []})
    bounds = limits(ctx)
    for source in run_inputs(ctx):
        taken = skipped = 0
        reasons: Counter[str] = Counter()
        for chunk in chunked(source.open(), PROBLEM_ROUND):
            problems, quarantine = to_problems(chunk, source.name, source.columns, bounds)
            written = ctx.store.insert_new("problems", problems)
            if quarantine.height:  # each insert opens the DuckDB file, even for no rows
                ctx.store.insert_new("quarantine", quarantine)
                reasons.update(quarantine["reason"])
            taken, skipped = taken + written.inserted, skipped + written.skipped
        _add_source(result, source.name, {"taken": taken, "skipped": skipped}, reasons)
        if skipped:
            result.skipped["already in the store"] += skipped
        result.rows_in += taken + skipped + reasons.total()
        result.rows_out += taken
    return result


def import_traces(ctx: StageContext, spec: TraceColumns) -> StageResult:
    result = StageResult("import-traces", detail={"sources": []})
    bounds = limits(ctx)
    for source in ctx.scope.inputs:
        written = {table: InsertResult(table, 0, 0) for table in TRACE_TABLES}
        reasons: Counter[str] = Counter()
        seen: dict[str, int] = {}  # generations per problem so far, numbered on across rounds
        for chunk in chunked(source.open(), TRACE_ROUND):
            got = to_traces(
                chunk,
                source.name,
                source.columns,
                spec.generations,
                spec.model or f"imported:{source.name}",
                spec.correctness,
                bounds,
                steps_col=spec.steps,
                label_col=spec.label,
                model_col=spec.model_col,
                seen=seen,
            )
            for table in TRACE_TABLES:  # Imported names its frames after their tables
                frame = getattr(got, table)
                if frame.height:
                    written[table] += ctx.store.insert_new(table, frame)
            reasons.update(got.quarantine["reason"])
        counts = {
            "problems new": written["problems"].inserted,
            "traces new": written["traces"].inserted,
            "traces skipped": written["traces"].skipped,
            "verdicts new": written["verdicts"].inserted,
            "steps new": written["steps"].inserted,
            "labels new": written["first_errors"].inserted,
        }
        _add_source(result, source.name, counts, reasons)
        result.rows_in += written["traces"].inserted + written["traces"].skipped
        result.rows_out += written["traces"].inserted
    return result


def _add_source(result: StageResult, name: str, counts: dict, reasons: Counter[str]) -> None:
    """One source's counts in ``detail["sources"]``; its quarantined rows by reason."""
    result.skipped.update({f"quarantined: {r}": n for r, n in reasons.items()})
    result.detail["sources"].append(
        {
            "source": name,
            **counts,
            "quarantined": reasons.total(),
            "reasons": dict(reasons.most_common()),
        }
    )
