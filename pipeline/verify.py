"""Verification: pull the final answer out of a completion and check it against
the gold answer with math-verify.

The checks run in worker processes on a CPU-time budget per item
(``pipeline/verify_pool.py``); the check itself is ``pipeline/answer_check.py``.
Answers that cannot be a mathematical answer (no box and no number, over-long,
program text) are settled here without a worker.
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.answer_check import Check, Outcome, check_one
from pipeline.keys import content_key
from pipeline.text import last_boxed
from pipeline.verify_pool import CHUNK, VerifyPool

__all__ = ["CHUNK", "Check", "Outcome", "VerifyPool", "check_one", "extract_answer", "verdict_rows"]

try:  # the version goes into every verdict's key
    from importlib.metadata import version as _pkg_version

    VERIFIER = f"math-verify=={_pkg_version('math-verify')}"
except Exception:  # pragma: no cover - metadata missing in odd installs
    VERIFIER = "math-verify"

STATUSES = ("correct", "wrong", "no_answer", "truncated", "timeout", "error")
MAX_ANSWER_CHARS = 1_000  # a longer "answer" is not an answer

_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*\$?([^\n$]{1,200}?)\$?\s*(?:\.|\n|$)",
    re.IGNORECASE,
)
# dunders, string quotes, keywords and method calls: program text, not mathematics
# (a lone ' stays allowed: f'(x) is a derivative)
_CODE = re.compile(r"__|[\"`]|\bimport\b|\blambda\b|[A-Za-z_]\w*\.[A-Za-z_]\w*\(")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def extract_answer(text: str, fallback: str = "last_number") -> str | None:
    """The final answer of a completion: the last ``\\boxed{}`` (balanced
    braces), else an "answer is ..." phrase, else ``fallback`` ("last_number"
    or "none")."""
    if "\\boxed" in text or "\\fbox" in text:
        # a box that does not close is a malformed answer, not a cue to go fishing for numbers
        boxed = last_boxed(text)
        return boxed.strip() or None if boxed is not None else None
    # look only at the tail: the phrase belongs at the end, and a 1 MB string
    # must not cost a regex scan of all of it
    tail = text[-4000:]
    matches = _ANSWER_IS.findall(tail)
    if matches:
        return matches[-1].strip().rstrip(".") or None
    if fallback == "last_number":
        numbers = _LAST_NUMBER.findall(tail)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def verdict_rows(
    traces: pl.DataFrame, pool: VerifyPool, fallback: str = "last_number", progress=None
) -> pl.DataFrame:
    """Verdicts for ``traces`` (columns trace_id, completion, finish_reason, answer = gold).

    A trace cut at max_tokens is ``truncated`` (wrong, as in DART) whatever it
    says; one with no extractable answer is ``no_answer``; the rest go to the pool.
    """
    rows: list[dict] = []
    checks: list[Check] = []
    pooled: list[int] = []
    for trace_id, completion, finish_reason, gold in traces.select(
        "trace_id", "completion", "finish_reason", "answer"
    ).iter_rows():
        extracted = extract_answer(completion, fallback)
        row = {"trace_id": trace_id, "extracted": extracted, "seconds": 0.0, "detail": None}
        if finish_reason == "length":
            row["status"] = "truncated"
        elif extracted is None:
            row["status"] = "no_answer"
        elif len(extracted) > MAX_ANSWER_CHARS:
            row.update(
                status="no_answer",
                extracted=extracted[:200],
                detail=f"answer of {len(extracted)} chars",
            )
        elif _CODE.search(extracted):
            row.update(status="no_answer", detail="looks like code, not a math answer")
        else:
            row["status"] = None
            pooled.append(len(rows))
            checks.append(Check(gold, extracted))
        rows.append(row)
        if row["status"] is not None and progress is not None:
            progress(1)
    for i, outcome in zip(pooled, pool.run(checks, progress), strict=True):
        rows[i].update(
            status=outcome.status, seconds=round(outcome.seconds, 4), detail=outcome.detail
        )
    frame = pl.DataFrame(
        rows,
        schema={
            "trace_id": pl.String,
            "extracted": pl.String,
            "seconds": pl.Float64,
            "detail": pl.String,
            "status": pl.String,
        },
    )
    return frame.with_columns(
        verdict_id=pl.col("trace_id").map_elements(
            lambda t: content_key("verdict", t, VERIFIER), return_dtype=pl.String
        ),
        verifier=pl.lit(VERIFIER),
    )
