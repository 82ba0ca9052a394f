"""Where a stage's wall time goes: engine start, generation, verification, store I/O
and the rest (Python between rounds), with the size of every generate call.

Every stage's result carries this breakdown (``detail["profile"]``, kept in
``runs.summary``; `pitfall run --profile` prints it), so a user can see on
their own machine what keeps the engine idle. The parts are measured where
they happen: the context's backends time their start and each call, its
verification pool times each batch, and the store times the connection it
opens per operation (``Store.busy_s``).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

PARTS = ("engine start", "generate", "verifier start", "verify", "store")
# verification (and its pool's start) on a thread while the engine generates:
# reported, but not a part of the wall time (the engine's time is)
BESIDE = "verify beside generation"
BESIDE_THREAD = "pitfall-verify"  # the name of that thread (pipeline/overlap.py)


@dataclass
class Profile:
    seconds: Counter = field(default_factory=Counter)  # part -> seconds
    calls: list[tuple[int, int, float]] = field(default_factory=list)  # sequences, tokens, s

    @contextlib.contextmanager
    def span(self, part: str) -> Iterator[None]:
        """Time ``part``; on the thread beside the engine it counts as :data:`BESIDE`."""
        if threading.current_thread().name.startswith(BESIDE_THREAD):
            part = BESIDE
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t0

    def generated(self, sequences: int, tokens: int, seconds: float) -> None:
        """One generate call: the sequences it asked for, the tokens it produced."""
        self.seconds["generate"] += seconds
        self.calls.append((sequences, tokens, seconds))

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def summary(self, wall_s: float, store_s: float) -> dict:
        """Seconds per part, "other" for the rest of ``wall_s``, and the generate calls."""
        parts = {p: round(self.seconds[p], 2) for p in PARTS if p != "store"}
        parts["store"] = round(store_s, 2)
        other = round(max(0.0, wall_s - sum(parts.values())), 2)
        out = {"seconds": {**parts, "other": other, BESIDE: round(self.seconds[BESIDE], 2)}}
        if self.calls:
            sizes = [c[0] for c in self.calls]
            tokens, seconds = sum(c[1] for c in self.calls), sum(c[2] for c in self.calls)
            out["generate calls"] = {  # a stream's poll is a call of what is in flight
                "calls": len(self.calls),
                "min": min(sizes),
                "median": statistics.median(sizes),
                "max": max(sizes),
                "tokens": tokens,
                "tokens/s": round(tokens / seconds) if seconds else None,
            }
        return out
