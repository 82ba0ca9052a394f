"""Verification: pull the final answer out of a completion and check it against
the gold answer with math-verify, in worker processes with a hard wall-clock
kill.

math-verify's own timeouts use ``signal.alarm``: they only work in a process's
main thread and some inputs (deep nesting, towers of powers) still take the
whole timeout or hang. So every check runs in the main thread of a worker
process, and the parent kills a worker that overruns and starts a fresh one;
the item gets a ``timeout`` verdict and the rest of the batch goes on.

Only LaTeX extraction is used: math-verify's plain-expression parser goes
through sympy's ``parse_expr``, which evaluates Python, and model text is
never evaluated as code.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection, wait

import polars as pl

from pipeline.keys import content_key
from pipeline.text import last_boxed

try:  # the version goes into every verdict's key
    from importlib.metadata import version as _pkg_version

    VERIFIER = f"math-verify=={_pkg_version('math-verify')}"
except Exception:  # pragma: no cover - metadata missing in odd installs
    VERIFIER = "math-verify"

STATUSES = ("correct", "wrong", "no_answer", "truncated", "timeout", "error")
MAX_ANSWER_CHARS = 1_000  # a longer "answer" is not an answer
CHUNK = 8  # checks per message to a worker

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


@dataclass(frozen=True)
class Check:
    """One (gold, extracted) pair to verify."""

    gold: str
    answer: str


@dataclass(frozen=True)
class Outcome:
    status: str  # correct / wrong / no_answer / timeout / error
    seconds: float
    detail: str | None = None


# ------------------------------------------------------------------ worker side


@lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    return _parse(gold)


def _parse(answer: str):
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${answer}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)


def check_one(check: Check) -> tuple[str, str | None]:
    """Verify in this process (a worker's main thread). Gold first: verify is not symmetric."""
    from math_verify import verify

    gold = _parse_gold(check.gold)
    if not gold:
        return "error", "gold answer does not parse"
    pred = _parse(check.answer)
    if not pred:  # nothing usable was said: not a wrong answer, no answer
        return "no_answer", "answer does not parse"
    return ("correct" if verify(gold, pred, timeout_seconds=None) else "wrong"), None


def _worker(conn: Connection) -> None:
    import logging

    # math-verify warns on every call that its own timeouts are off: the parent's kill is the timeout
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        for (
            index,
            check,
        ) in job:  # a small chunk: one message per result, so the parent times each item
            t0 = time.monotonic()
            try:
                status, detail = check_one(check)
            except Exception as exc:  # a verdict, not a crash
                status, detail = "error", f"{type(exc).__name__}: {exc}"[:500]
            conn.send((index, status, detail, time.monotonic() - t0))


# ------------------------------------------------------------------ parent side


class VerifyPool:
    """A fixed number of worker processes; a worker that overruns is killed and replaced."""

    def __init__(self, workers: int = 2, timeout_s: float = 5.0):
        self.workers = workers
        self.timeout_s = timeout_s
        # forkserver: workers start from a clean process that has math-verify
        # imported already, so a replacement is ready in milliseconds
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["math_verify", "sympy", "pipeline.verify"])
        self._procs: list[tuple[mp.Process, Connection]] = []

    def start(self) -> VerifyPool:
        self._procs = [self._spawn() for _ in range(self.workers)]
        return self

    def __enter__(self) -> VerifyPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self) -> tuple[mp.Process, Connection]:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, args=(child,), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def close(self) -> None:
        for _, conn in self._procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
        for proc, conn in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._procs = []

    def run(self, checks: Sequence[Check], progress=None) -> list[Outcome]:
        """Outcomes in the order of ``checks``; identical checks are verified once.

        Work goes out in chunks of ``CHUNK`` items (round trips, not checks,
        were the cost); each result comes back on its own, so the clock runs
        per item. A worker past the timeout is killed, its item gets
        ``timeout`` and the rest of its chunk goes back in the queue.
        """
        unique = list(dict.fromkeys(checks))
        results: dict[Check, Outcome] = {}
        pending = list(range(len(unique)))[::-1]
        # worker slot -> (indices sent and not answered, when the current one started)
        busy: dict[int, tuple[list[int], float]] = {}
        while pending or busy:
            for slot in range(len(self._procs)):
                if slot not in busy and pending:
                    chunk = [pending.pop() for _ in range(min(CHUNK, len(pending)))]
                    self._procs[slot][1].send([(i, unique[i]) for i in chunk])
                    busy[slot] = (chunk, time.monotonic())
            deadline = min(started for _, started in busy.values()) + self.timeout_s
            ready = wait(
                [self._procs[s][1] for s in busy], timeout=max(0.0, deadline - time.monotonic())
            )
            now = time.monotonic()
            for slot in list(busy):
                proc, conn = self._procs[slot]
                chunk, started = busy[slot]
                done = 0
                if conn in ready:
                    try:
                        while conn.poll():
                            index, status, detail, seconds = conn.recv()
                            results[unique[index]] = Outcome(status, seconds, detail)
                            chunk.remove(index)
                            done += 1
                        started = now
                    except EOFError:  # the worker died (out of memory, a segfault in C code)
                        results[unique[chunk.pop(0)]] = Outcome(
                            "error", now - started, f"worker exited with {proc.exitcode}"
                        )
                        done += 1
                        self._replace(slot)
                        pending.extend(reversed(chunk))
                        chunk = []
                elif now - started >= self.timeout_s:
                    self._replace(slot)
                    results[unique[chunk.pop(0)]] = Outcome(
                        "timeout", now - started, f"killed after {self.timeout_s:g} s"
                    )
                    done += 1
                    pending.extend(reversed(chunk))
                    chunk = []
                if chunk:
                    busy[slot] = (chunk, started)
                else:
                    busy.pop(slot)
                if progress is not None and done:
                    progress(done)
        return [results[c] for c in checks]

    def _replace(self, slot: int) -> None:
        proc, conn = self._procs[slot]
        proc.kill()
        proc.join()
        conn.close()
        self._procs[slot] = self._spawn()


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
