"""Trace import wiring: read a source, split it into problems, traces and verdicts, write them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.import_traces import to_traces
from pipeline.ingest import ColumnMap, IngestLimits
from pipeline.readers import Record
from pipeline.store import Store


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
) -> ImportSummary:
    limits = IngestLimits(settings.problems.max_problem_chars, settings.problems.max_answer_chars)
    got = to_traces(
        records,
        source,
        columns,
        generations_col,
        model,
        correctness_cols,
        limits,
        steps_col=steps_col,
        label_col=label_col,
        model_col=model_col,
    )
    problems = store.insert_new("problems", got.problems)
    traces = store.insert_new("traces", got.traces)
    verdicts = store.insert_new("verdicts", got.verdicts)
    steps = store.insert_new("steps", got.steps)
    labels = store.insert_new("first_errors", got.first_errors)
    store.insert_new("quarantine", got.quarantine)
    return ImportSummary(
        source,
        problems.inserted,
        traces.inserted,
        traces.skipped,
        verdicts.inserted,
        got.quarantine.height,
        steps.inserted,
        labels.inserted,
    )
