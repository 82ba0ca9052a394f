"""Ingest: raw records -> normalized ``problems`` rows and ``quarantine`` rows.

Pure: records in, two Polars frames out. The CLI reads the files and the store
writes the frames.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import polars as pl

from pipeline.config import ProblemsSettings
from pipeline.readers import Record
from pipeline.rows import (
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_CHARS,
    problem_key,
    quarantine_row,
    storable,
)
from pipeline.text import last_boxed, normalize_answer, normalize_text


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold what, and how to get the gold answer out."""

    problem: str = "problem"
    answer: str | None = "answer"  # None: take it from the solution
    solution: str | None = "solution"
    id: str | None = None
    answer_from: Callable[[str], str | None] | None = None  # applied to the answer column
    answer_from_solution: Callable[[str], str | None] | None = None  # when `answer` is missing
    solution_from: Callable[[str], str] | None = None  # applied to the solution column
    # process-labelled sets (ProcessBench) have no gold answer: NULL, not a bad row
    answer_optional: bool = False


_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final(answer_text: str) -> str | None:
    """The number after GSM8K's ``#### `` line, thousands separators dropped."""
    m = _GSM8K_ANSWER.search(answer_text)
    if not m:
        return None
    return m[1].replace(",", "").strip() or None


def gsm8k_solution(answer_text: str) -> str:
    """GSM8K's worked solution: the answer field before ``####``, calculator notes removed."""
    body = answer_text.split("####")[0]
    return re.sub(r"<<[^>]*>>", "", body).strip()


PRESETS: dict[str, ColumnMap] = {
    # MATH and MATH-500: problem / solution / answer (MATH-500 has unique_id)
    "math": ColumnMap(
        "problem", "answer", "solution", "unique_id", answer_from_solution=last_boxed
    ),
    # GSM8K: question / answer, the answer ending in "#### N"
    "gsm8k": ColumnMap(
        "question", "answer", "answer", None, answer_from=gsm8k_final, solution_from=gsm8k_solution
    ),
    # NuminaMath-style: problem / solution with a boxed answer
    "numina": ColumnMap("problem", None, "solution", None, answer_from_solution=last_boxed),
    # ProcessBench: problem / steps / label, no gold answer
    "processbench": ColumnMap("problem", None, None, "id", answer_optional=True),
}


_P = ProblemsSettings()


@dataclass(frozen=True)
class IngestLimits:
    max_problem_chars: int = _P.max_problem_chars
    max_answer_chars: int = _P.max_answer_chars

    @classmethod
    def from_settings(cls, problems: ProblemsSettings) -> IngestLimits:
        return cls(problems.max_problem_chars, problems.max_answer_chars)


class BadRow(ValueError):
    pass


def column_map(
    preset: str | None = None,
    *,
    problem: str | None = None,
    answer: str | None = None,
    solution: str | None = None,
    id: str | None = None,
) -> ColumnMap:
    """A preset (or the plain default) with any explicitly named columns on top."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; have: {', '.join(PRESETS)}")
    base = PRESETS[preset] if preset else ColumnMap()
    given = {"problem": problem, "answer": answer, "solution": solution, "id": id}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


def to_problems(
    records: Iterable[Record],
    source: str,
    columns: ColumnMap,
    limits: IngestLimits = IngestLimits(),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalize records into (problems, quarantine) frames, one row per record.

    Repeated problems share a key, so the store keeps the first and counts the
    rest as skipped.
    """
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for rec in records:
        try:
            good.append(problem_row(record_row(rec), source, columns, limits))
        except BadRow as exc:
            bad.append(quarantine_record("ingest", source, rec, str(exc)))
    return pl.DataFrame(good, schema=PROBLEM_SCHEMA), pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)


def record_row(rec: Record) -> dict:
    """The record's row; BadRow if it could not be read or holds text that cannot be stored."""
    if rec.row is None:
        raise BadRow(rec.error or "undecodable")
    column = _surrogate_column(rec.row)
    if column is not None:
        raise BadRow(f"lone surrogate (not valid Unicode) in column {column!r}")
    return rec.row


def quarantine_record(stage: str, source: str, rec: Record, reason: str) -> dict[str, Any]:
    raw = rec.raw if rec.row is None else raw_text(rec.row)
    return quarantine_row(stage, source, rec.locator, reason, raw)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_column(row: dict) -> str | None:
    """The column holding a lone surrogate in its name or anywhere in its value.

    JSON may escape one (``"\\ud800"``); it cannot be encoded, so it would fail
    the key hash and the store. Walked with a stack: any nesting depth is safe.
    """
    for column, value in row.items():
        stack = [column, value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return column
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list | tuple):
                stack.extend(item)
    return None


def problem_row(row: dict, source: str, cols: ColumnMap, limits: IngestLimits) -> dict[str, Any]:
    problem = _text_field(row, cols.problem, "problem")
    solution = (
        _text_field(row, cols.solution, "solution", required=False) if cols.solution else None
    )
    if solution is not None and cols.solution_from:
        solution = cols.solution_from(solution)

    answer: str | None = None
    if cols.answer and cols.answer in row and row[cols.answer] is not None:
        answer = _answer_value(row[cols.answer], cols.answer)
        if answer is not None and cols.answer_from:
            extracted = cols.answer_from(answer)
            if extracted is None:
                raise BadRow(f"no final answer found in {cols.answer!r}")
            answer = extracted
    if answer is None and cols.answer_from_solution and solution:
        answer = cols.answer_from_solution(solution)
    if answer is None and not cols.answer_optional:
        wanted = cols.answer or f"a boxed answer in {cols.solution!r}"
        raise BadRow(f"missing answer ({wanted})")

    problem = normalize_text(problem)
    if not problem:
        raise BadRow(f"empty problem ({cols.problem!r})")
    if answer is not None:
        answer = normalize_answer(answer)
        if not answer:
            raise BadRow(f"empty answer ({cols.answer or 'boxed'!r})")
    if len(problem) > limits.max_problem_chars:
        raise BadRow(
            f"problem is {len(problem)} chars, over the limit of {limits.max_problem_chars}"
        )
    if answer is not None and len(answer) > limits.max_answer_chars:
        raise BadRow(f"answer is {len(answer)} chars, over the limit of {limits.max_answer_chars}")

    used = {c for c in (cols.problem, cols.answer, cols.solution, cols.id) if c}
    meta = {k: v for k, v in row.items() if k not in used}
    source_id = row.get(cols.id) if cols.id else None
    return {
        "problem_id": problem_key(problem, answer or ""),
        "problem": problem,
        "answer": answer,
        "solution": normalize_text(solution) if solution else None,
        "source": source,
        "source_id": None if source_id is None else str(source_id),
        "meta": json.dumps(meta, default=str, ensure_ascii=False) if meta else None,
    }


def _text_field(row: dict, col: str, what: str, required: bool = True) -> str | None:
    if col not in row or row[col] is None:
        if required:
            raise BadRow(f"missing {what} column {col!r}")
        return None
    value = row[col]
    if not isinstance(value, str):
        raise BadRow(f"{what} column {col!r} holds {type(value).__name__}, not text")
    return value


def _answer_value(value: Any, col: str) -> str:
    # numeric gold answers are common (GSM8K-style datasets store ints, Parquet decimals)
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise BadRow(f"answer column {col!r} holds {type(value).__name__}, not text or a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRow(f"answer column {col!r} holds {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BadRow(f"answer column {col!r} holds {value}")
        # every digit kept ('f', not normalize(), which rounds to 28); 3.50 reads as 3.5
        text = format(value, "f")
        text = text.rstrip("0").rstrip(".") if "." in text else text
        return "0" if text == "-0" else text
    return str(value)


def raw_text(row: dict) -> str:
    try:
        text = json.dumps(row, default=str, ensure_ascii=False)
    except RecursionError:
        text = "(nested too deeply to show)"
    return storable(text)[:RAW_CHARS]
