"""Import existing generations as traces (OpenR1-Math-Raw shape and simpler).

One source row holds a problem, its gold answer and one completion or a list
of them (``generations``); optional per-generation correctness lists (e.g.
``correctness_math_verify``) come along as verdicts of a verifier named after
the column. That is enough for REDI's own recipe (first correct vs first
incorrect generation) without sampling anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.ingest import (
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    BadRow,
    ColumnMap,
    IngestLimits,
    problem_row,
    quarantine_row,
    raw_text,
)
from pipeline.keys import content_key, params_key, trace_key
from pipeline.readers import Record

TRACE_SCHEMA = {
    "trace_id": pl.String,
    "problem_id": pl.String,
    "model": pl.String,
    "params_id": pl.String,
    "params": pl.String,
    "sample_index": pl.Int32,
    "prompt": pl.String,
    "completion": pl.String,
    "finish_reason": pl.String,
    "origin": pl.String,
}
VERDICT_SCHEMA = {
    "verdict_id": pl.String,
    "trace_id": pl.String,
    "verifier": pl.String,
    "status": pl.String,
}


@dataclass(frozen=True)
class Imported:
    problems: pl.DataFrame
    traces: pl.DataFrame
    verdicts: pl.DataFrame
    quarantine: pl.DataFrame


def to_traces(
    records: Iterable[Record],
    source: str,
    columns: ColumnMap,
    generations_col: str,
    model: str,
    correctness_cols: tuple[str, ...] = (),
    limits: IngestLimits = IngestLimits(),
) -> Imported:
    params = {"origin": "imported", "source": source}
    pid_params = params_key(params)
    problems, traces, verdicts, bad = [], [], [], []
    for rec in records:
        if rec.row is None:
            bad.append(
                quarantine_row("import", source, rec.locator, rec.error or "undecodable", rec.raw)
            )
            continue
        try:
            problem = problem_row(rec.row, source, columns, limits)
            generations = _generations(rec.row, generations_col)
            labels = {c: _labels(rec.row, c, len(generations)) for c in correctness_cols}
        except BadRow as exc:
            bad.append(quarantine_row("import", source, rec.locator, str(exc), raw_text(rec.row)))
            continue
        problems.append(problem)
        for i, text in enumerate(generations):
            tid = trace_key(problem["problem_id"], model, params, i)
            traces.append(
                {
                    "trace_id": tid,
                    "problem_id": problem["problem_id"],
                    "model": model,
                    "params_id": pid_params,
                    "params": json.dumps(params),
                    "sample_index": i,
                    "prompt": problem["problem"],
                    "completion": text,
                    "finish_reason": "imported",
                    "origin": "imported",
                }
            )
            for col, marks in labels.items():
                if marks[i] is not None:
                    verifier = f"imported:{col}"
                    verdicts.append(
                        {
                            "verdict_id": content_key("verdict", tid, verifier),
                            "trace_id": tid,
                            "verifier": verifier,
                            "status": "correct" if marks[i] else "wrong",
                        }
                    )
    return Imported(
        pl.DataFrame(problems, schema=PROBLEM_SCHEMA),
        pl.DataFrame(traces, schema=TRACE_SCHEMA),
        pl.DataFrame(verdicts, schema=VERDICT_SCHEMA),
        pl.DataFrame(bad, schema=QUARANTINE_SCHEMA),
    )


def _generations(row: dict, col: str) -> list[str]:
    if col not in row or row[col] is None:
        raise BadRow(f"missing generations column {col!r}")
    value = row[col]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise BadRow(
            f"generations column {col!r} holds {type(value).__name__}, not text or a list of text"
        )
    if not all(isinstance(g, str) for g in items):
        raise BadRow(f"generations column {col!r} has a non-text item")
    return items


def _labels(row: dict, col: str, n: int) -> list[Any]:
    value = row.get(col)
    if value is None:
        return [None] * n
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(v is None or isinstance(v, bool) for v in value)
    ):
        raise BadRow(f"correctness column {col!r} must be a list of {n} booleans")
    return value
