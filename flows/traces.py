"""Trace import wiring: read a source, split it into problems, traces and verdicts, write them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from flows.ingest import reason_counts
from pipeline.config import Settings
from pipeline.import_traces import to_traces
from pipeline.ingest import ColumnMap, IngestLimits
from pipeline.readers import Record, chunked
from pipeline.store import InsertResult, Store

# what each chunk writes, in this order: a trace's problem goes in before it
TABLES = ("problems", "traces", "verdicts", "steps", "first_errors", "quarantine")
# Source rows per round; fewer than ingest's, as a row carries whole generations
# (a 70 MB OpenR1-like JSONL: 822 MB peak read whole, ~600 MB in rounds of 1,000).
CHUNK_ROWS = 1_000


@dataclass(frozen=True)
class ImportSummary:
    source: str
    problems_new: int
    traces_new: int
    traces_skipped: int
    verdicts_new: int
    quarantined: int
    steps_new: int = 0
    labels_new: int = 0
    reasons: pl.DataFrame = field(default_factory=lambda: reason_counts(Counter()))


def import_records(
    store: Store,
    records: Iterable[Record],
    source: str,
    columns: ColumnMap,
    generations_col: str,
    model: str,
    correctness_cols: tuple[str, ...],
    settings: Settings,
    *,
    steps_col: str | None = None,
    label_col: str | None = None,
    model_col: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportSummary:
    limits = IngestLimits(settings.problems.max_problem_chars, settings.problems.max_answer_chars)
    written = {table: InsertResult(table, 0, 0) for table in TABLES}
    reasons: Counter[str] = Counter()
    seen: dict[str, int] = {}  # generations per problem so far, numbered on across chunks
    for chunk in chunked(records, chunk_rows):
        got = to_traces(
            chunk,
            source,
            columns,
            generations_col,
            model,
            correctness_cols,
            limits,
            steps_col=steps_col,
            label_col=label_col,
            model_col=model_col,
            seen=seen,
        )
        for table in TABLES:  # Imported names its frames after their tables
            frame = getattr(got, table)
            if frame.height:  # each insert opens the DuckDB file, even for no rows
                written[table] += store.insert_new(table, frame)
        reasons.update(got.quarantine["reason"])
    return ImportSummary(
        source,
        written["problems"].inserted,
        written["traces"].inserted,
        written["traces"].skipped,
        written["verdicts"].inserted,
        reasons.total(),
        written["steps"].inserted,
        written["first_errors"].inserted,
        reason_counts(reasons),
    )
