"""Verification: pull the final answer out of a completion and check it against
the gold answer with math-verify.

The checks run in worker processes on a CPU-time budget per item
(``pipeline/verify_pool.py``); the check itself is ``pipeline/answer_check.py``.
Answers that cannot be a mathematical answer (no box and no number, over-long,
program text) are settled here without a worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from pipeline.answer_check import Check, Outcome, check_one
from pipeline.config import VerifySettings
from pipeline.rows import verdict_frame, verdict_row
from pipeline.text import last_boxed
from pipeline.verify_pool import CHUNK, VerifyPool

__all__ = [
    "CHUNK",
    "Answer",
    "Check",
    "Judged",
    "Outcome",
    "VerifyPool",
    "check_one",
    "extract_answer",
    "judge",
    "verdict_rows",
]

try:  # the version goes into every verdict's key
    from importlib.metadata import version as _pkg_version

    VERIFIER = f"math-verify=={_pkg_version('math-verify')}"
except Exception:  # pragma: no cover - metadata missing in odd installs
    VERIFIER = "math-verify"

_V = VerifySettings()  # the defaults live in the settings, declared once
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


def extract_answer(text: str, fallback: str = _V.fallback) -> str | None:
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


@dataclass(frozen=True)
class Answer:
    """What a verdict is about: a completion (a trace, or a rollout's continuation
    without the prefix it continues), why it ended, and the gold answer."""

    completion: str
    finish_reason: str | None
    gold: str


@dataclass(frozen=True)
class Judged:
    status: str
    extracted: str | None
    seconds: float
    detail: str | None


def judge(
    answers: list[Answer], pool: VerifyPool, fallback: str = _V.fallback, progress=None
) -> list[Judged]:
    """A verdict per answer. One cut at max_tokens is ``truncated`` (wrong, as in
    DART) whatever it says; one with no extractable answer is ``no_answer``; the
    rest go to the pool."""
    out: list[dict] = []
    checks: list[Check] = []
    pooled: list[int] = []
    for a in answers:
        extracted = extract_answer(a.completion, fallback)
        row = {"status": None, "extracted": extracted, "seconds": 0.0, "detail": None}
        if a.finish_reason == "length":
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
            pooled.append(len(out))
            checks.append(Check(a.gold, extracted))
        out.append(row)
        if row["status"] is not None and progress is not None:
            progress(1)
    for i, outcome in zip(pooled, pool.run(checks, progress), strict=True):
        out[i].update(
            status=outcome.status, seconds=round(outcome.seconds, 4), detail=outcome.detail
        )
    return [Judged(**row) for row in out]


def verdict_rows(
    traces: pl.DataFrame, pool: VerifyPool, fallback: str = _V.fallback, progress=None
) -> pl.DataFrame:
    """``verdicts`` rows for ``traces`` (columns trace_id, completion, finish_reason,
    answer = gold), by this verifier."""
    ids, answers = [], []
    for trace_id, completion, finish_reason, gold in traces.select(
        "trace_id", "completion", "finish_reason", "answer"
    ).iter_rows():
        ids.append(trace_id)
        answers.append(Answer(completion, finish_reason, gold))
    judged = judge(answers, pool, fallback, progress)
    return verdict_frame(
        [
            verdict_row(
                t, VERIFIER, j.status, extracted=j.extracted, seconds=j.seconds, detail=j.detail
            )
            for t, j in zip(ids, judged, strict=True)
        ]
    )
