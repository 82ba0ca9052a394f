"""Ingest wiring: read a source, normalize it, write problems and quarantine rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.config import Settings
from pipeline.ingest import ColumnMap, IngestLimits, to_problems
from pipeline.readers import Record
from pipeline.store import Store


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
) -> IngestSummary:
    limits = IngestLimits(settings.problems.max_problem_chars, settings.problems.max_answer_chars)
    problems, quarantine = to_problems(records, source, columns, limits)
    written = store.insert_new("problems", problems)
    store.insert_new("quarantine", quarantine)
    reasons = (
        quarantine.group_by("reason").len("rows").sort("rows", descending=True)
        if quarantine.height
        else pl.DataFrame(schema={"reason": pl.String, "rows": pl.UInt32})
    )
    return IngestSummary(source, written.inserted, written.skipped, quarantine.height, reasons)
