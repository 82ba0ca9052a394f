"""Generate, store, verify and decide at the same time, so the engine does not wait.

:func:`drive` keeps a stream (``pipeline/backends/stream.py``) fed. What
finishes is collected and handed to the caller's ``on_finished`` every
``flush_s`` seconds, or at ``flush_requests`` finished requests, or when the
engine has nothing left: it stores them and returns their verification, which
runs on a thread beside the engine. When a batch's verdicts are back,
``on_verified`` stores them and returns what to ask next, which goes to the
engine at once. Rounds disappear: a problem's next samples, or a search's next
probe, start as soon as its own last ones are verified.

The store is only used from the calling thread; the verification thread only
talks to the worker pool (``ctx.pool()``, processes). A flush is the unit a
kill can lose, as a chunk of requests was before.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pipeline.backends.stream import Finished, Stream
from pipeline.profile import BESIDE_THREAD, Profile
from pipeline.sampling import Request, ServerUnavailable

FLUSH_S = 2.0  # seconds between commits of finished work while the engine is busy

Verification = Callable[[], Any]  # runs on the verification thread


def drive(
    stream: Stream,
    first: list[tuple[Hashable, Request]],
    on_finished: Callable[[list[Finished]], Verification],
    on_verified: Callable[[Any], list[tuple[Hashable, Request]]],
    *,
    flush_requests: int,
    flush_s: float = FLUSH_S,
    profile: Profile | None = None,
) -> None:
    """Run until nothing is queued, finished-but-unstored or unverified.

    A :class:`ServerUnavailable` from the stream is raised as soon as what
    finished before it is stored: the command ends promptly, and the next run
    verifies first what is unverified."""
    stream.submit(first)
    buffer: list[Finished] = []
    jobs: deque[Future] = deque()
    last = time.monotonic()

    def flush() -> None:
        nonlocal buffer, last
        if buffer:
            jobs.append(verifier.submit(on_finished(buffer)))
            buffer, last = [], time.monotonic()

    def settle(block: bool) -> list[tuple[Hashable, Request]]:
        """Verdicts that are back; with ``block``, wait until something is asked."""
        asked: list[tuple[Hashable, Request]] = []
        while jobs and (jobs[0].done() or (block and not asked)):
            if not jobs[0].done() and profile is not None:
                with profile.span("verify"):  # the engine is idle: only the wait counts
                    result = jobs.popleft().result()
            else:
                result = jobs.popleft().result()
            asked += on_verified(result)
        return asked

    with ThreadPoolExecutor(1, thread_name_prefix=BESIDE_THREAD) as verifier:
        try:
            while stream.busy or buffer or jobs:
                if stream.busy:
                    try:
                        buffer.extend(stream.poll())
                    except ServerUnavailable:
                        if buffer:  # stored now; the next run verifies what is unverified
                            on_finished(buffer)
                        for job in jobs:
                            job.cancel()  # one already running finishes, unheard
                        raise
                idle = not stream.busy
                if idle or len(buffer) >= flush_requests or time.monotonic() - last >= flush_s:
                    flush()
                stream.submit(settle(block=idle))
        finally:
            stream.close()
