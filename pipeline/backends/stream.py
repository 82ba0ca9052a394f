"""Requests in whenever they are ready, each back as soon as it is done.

A caller that works in rounds (generate everything, wait for the slowest
sequence, verify, decide what to ask next) leaves the engine idle while a
round's last long sequences finish and while the round is verified and
stored. A stream takes new requests between engine steps, so what one finished
request leads to (a problem's next samples, a search's next probe) can start
while the rest are still generating.

vLLM streams natively (``VLLMBackend.stream``: its engine's add-request/step
loop). Any other backend gets :class:`BatchStream`: what was submitted goes
out in one ``generate`` call when the caller polls, which is the round
behaviour and gives the same results request for request.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from pipeline.sampling import Completion, Failed, Request, SamplingParams, ServerUnavailable

Finished = tuple[Hashable, "list[Completion] | Failed"]


class Stream(Protocol):
    def submit(self, items: list[tuple[Hashable, Request]]) -> None:
        """Queue requests, each with the caller's key."""
        ...

    def poll(self) -> list[Finished]:
        """Generate until at least one request has finished (none when nothing is
        queued) and return the finished ones with their keys."""
        ...

    @property
    def busy(self) -> bool:
        """Something to poll for: unfinished requests, or a failure still to raise."""
        ...

    @property
    def sequences(self) -> int:
        """Sequences submitted and not finished yet (a request's ``n`` each)."""
        ...

    def close(self) -> None:
        """Drop what is unfinished (the engine stays usable)."""
        ...


def open_stream(backend, params: SamplingParams) -> Stream:
    """The backend's own stream, or a :class:`BatchStream` over its ``generate``."""
    native = getattr(backend, "stream", None)
    return native(params) if native is not None else BatchStream(backend, params)


class BatchStream:
    """A stream over ``generate``: every poll sends what is queued as one call
    (at most ``per_poll`` requests: the transformers backend, which generates
    each request alone anyway, takes one at a time, so what follows from it
    is asked for at once).

    A request the backend gives up on comes back as :class:`Failed`; when the
    server is unusable, the requests that finished come back first and the
    next poll raises the :class:`ServerUnavailable`."""

    def __init__(self, backend, params: SamplingParams, per_poll: int | None = None):
        self.backend, self.params, self.per_poll = backend, params, per_poll
        self._queue: list[tuple[Hashable, Request]] = []
        self._stopped: ServerUnavailable | None = None

    def submit(self, items: list[tuple[Hashable, Request]]) -> None:
        self._queue.extend(items)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._stopped is not None

    @property
    def sequences(self) -> int:
        return sum(r.n for _, r in self._queue)

    def poll(self) -> list[Finished]:
        from pipeline.sampling import GenerationFailed

        if self._stopped is not None:
            raise self._stopped
        cut = len(self._queue) if self.per_poll is None else self.per_poll
        batch, self._queue = self._queue[:cut], self._queue[cut:]
        if not batch:
            return []
        try:
            results: list = self.backend.generate([r for _, r in batch], self.params)
        except GenerationFailed as exc:
            results = exc.results
            if isinstance(exc, ServerUnavailable):
                self._stopped = exc
        return [(key, r) for (key, _), r in zip(batch, results, strict=True) if r is not None]

    def close(self) -> None:
        self._queue = []
