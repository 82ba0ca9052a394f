"""Ingest wiring: read a source, normalize it, write problems and quarantine rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.config import Settings
from pipeline.ingest import ColumnMap, IngestLimits, to_problems
from pipeline.readers import Record, chunked
from pipeline.store import Store

# Records normalized and written per round, so memory does not follow the file
# size (a 70 MB JSONL: 664 MB peak read whole, ~505 MB in rounds of 5,000, the
# rest being imports and DuckDB's cache); each round opens the DuckDB file,
# so smaller rounds cost CPU, and a reader waits for one round at most.
CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class IngestSummary:
    source: str
    taken: int  # new problems written
    skipped: (
        int  # valid rows whose problem was already there (in the store or earlier in the input)
    )
    quarantined: int  # bad rows seen in this input
    reasons: pl.DataFrame  # quarantined rows by reason


def source_name(path: Path) -> str:
    """``math500/test.jsonl`` rather than ``test.jsonl``: many benchmarks name their files alike."""
    parts = path.resolve().parts
    return "/".join(parts[-2:])


def ingest_records(
    store: Store,
    records: Iterable[Record],
    source: str,
    columns: ColumnMap,
    settings: Settings,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> IngestSummary:
    limits = IngestLimits(settings.problems.max_problem_chars, settings.problems.max_answer_chars)
    taken = skipped = 0
    reasons: Counter[str] = Counter()
    for chunk in chunked(records, chunk_rows):
        problems, quarantine = to_problems(chunk, source, columns, limits)
        written = store.insert_new("problems", problems)
        if quarantine.height:  # each insert opens the DuckDB file, even for no rows
            store.insert_new("quarantine", quarantine)
            reasons.update(quarantine["reason"])
        taken, skipped = taken + written.inserted, skipped + written.skipped
    return IngestSummary(source, taken, skipped, reasons.total(), reason_counts(reasons))


def reason_counts(reasons: Counter[str]) -> pl.DataFrame:
    """Quarantined rows by reason, the most common first."""
    most = reasons.most_common()
    return pl.DataFrame(
        {"reason": [r for r, _ in most], "rows": [n for _, n in most]},
        schema={"reason": pl.String, "rows": pl.UInt32},
    )
