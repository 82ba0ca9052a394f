"""Import existing generations as traces (OpenR1-Math-Raw shape and simpler).

One source row holds a problem, its gold answer and one completion or a list
of them (``generations``); optional per-generation correctness lists (e.g.
``correctness_math_verify``) come along as verdicts of a verifier named after
the column. That is enough for REDI's own recipe (first correct vs first
incorrect generation) without sampling anything.

Process-labelled sets come along too: ``steps_col`` names a column holding one
generation as a list of steps (kept exactly as given, joined by blank lines),
and ``label_col`` its first wrong step (an int, -1 for none, as ProcessBench)
or per-step ratings (PRM800K-style -1/0/1, the first -1 is the first error).
Those labels become ``first_errors`` rows of method ``annotated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.ingest import (
    BadRow,
    ColumnMap,
    IngestLimits,
    problem_row,
    quarantine_record,
    record_row,
)
from pipeline.readers import Record
from pipeline.rows import (
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    STEP_SCHEMA,
    first_error_frame,
    first_error_row,
    imported_completion,
    step_rows,
    trace_frame,
    trace_row,
    verdict_frame,
    verdict_row,
)
from pipeline.segment import given_steps

ANNOTATED = "annotated"
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Imported:
    problems: pl.DataFrame
    traces: pl.DataFrame
    verdicts: pl.DataFrame
    quarantine: pl.DataFrame
    steps: pl.DataFrame
    first_errors: pl.DataFrame


def to_traces(
    records: Iterable[Record],
    source: str,
    columns: ColumnMap,
    generations_col: str,
    model: str,
    correctness_cols: tuple[str, ...] = (),
    limits: IngestLimits = IngestLimits(),
    *,
    steps_col: str | None = None,
    label_col: str | None = None,
    model_col: str | None = None,
    seen: dict[str, int] | None = None,
) -> Imported:
    """Split records into frames. ``seen`` counts the generations taken per
    problem so far, updated in place: pass the same dict for each chunk of one source."""
    params = {"origin": "imported", "source": source}
    problems, traces, verdicts, bad, steps, labels_out = [], [], [], [], [], []
    # a problem can come back in later rows (ProcessBench: one row per generator):
    # its generations are numbered on, so every row keeps its own traces
    seen = {} if seen is None else seen
    for rec in records:
        try:
            row = record_row(rec)
            problem = problem_row(row, source, columns, limits)
            if steps_col:
                given = _step_list(row, steps_col)
                generations = [given_steps(given)[0]]
            else:
                generations = _generations(row, generations_col)
            labels = {c: _labels(row, c, len(generations)) for c in correctness_cols}
            annotation = (
                _first_error_label(row, label_col, len(given) if steps_col else None)
                if label_col
                else None
            )
            row_model = _model_name(row, model_col) if model_col else model
        except BadRow as exc:
            bad.append(quarantine_record("import", source, rec, str(exc)))
            continue
        problems.append(problem)
        first = seen.get(problem["problem_id"], 0)
        seen[problem["problem_id"]] = first + len(generations)
        for i, text in enumerate(generations, start=first):
            trace = trace_row(
                problem["problem_id"],
                row_model,
                params,
                i,
                problem["problem"],
                imported_completion(text),
                origin="imported",
            )
            tid = trace["trace_id"]
            if steps_col:
                steps.extend(step_rows(tid, text, given_steps(given)[1]))
            if annotation is not None:
                labels_out.append(
                    first_error_row(tid, ANNOTATED, annotation, 0, 0, {"column": label_col})
                )
            traces.append(trace)
            for col, marks in labels.items():
                if marks[i - first] is not None:
                    status = "correct" if marks[i - first] else "wrong"
                    verdicts.append(verdict_row(tid, f"imported:{col}", status))
    return Imported(
        pl.DataFrame(problems, schema=PROBLEM_SCHEMA),
        trace_frame(traces),
        verdict_frame(verdicts),
        pl.DataFrame(bad, schema=QUARANTINE_SCHEMA),
        pl.DataFrame(steps, schema=STEP_SCHEMA),
        first_error_frame(labels_out),
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


def _step_list(row: dict, col: str) -> list[str]:
    value = row.get(col)
    if not isinstance(value, list) or not value:
        raise BadRow(f"steps column {col!r} must hold a non-empty list of text")
    if not all(isinstance(s, str) and s.strip() for s in value):
        raise BadRow(f"steps column {col!r} has an empty or non-text step")
    return value


def _first_error_label(row: dict, col: str, n_steps: int | None) -> int | None:
    """An int label (-1: no error) or per-step ratings (first negative rating)."""
    value = row.get(col)
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in value):
            raise BadRow(f"label column {col!r}: step ratings must be numbers")
        label = next((i for i, r in enumerate(value) if r < 0), -1)
    elif isinstance(value, int) and not isinstance(value, bool):
        label = value
    else:
        raise BadRow(f"label column {col!r} holds {type(value).__name__}, not a step index")
    # first_error is an INTEGER column: without steps to index, that is the bound
    top = INT32_MAX if n_steps is None else n_steps - 1
    if not -1 <= label <= top:
        raise BadRow(f"label {label} is not -1 or a step index (0..{top})")
    return label


def _model_name(row: dict, col: str) -> str:
    value = row.get(col)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"model column {col!r} must hold a name")
    return value


def _labels(row: dict, col: str, n: int) -> list[Any]:
    value = row.get(col)
    if value is None:
        return [None] * n
    if n == 1 and isinstance(value, bool):  # one generation, one flag (ProcessBench)
        return [value]
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(v is None or isinstance(v, bool) for v in value)
    ):
        raise BadRow(f"correctness column {col!r} must be a list of {n} booleans")
    return value
