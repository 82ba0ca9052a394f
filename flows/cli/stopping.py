"""SIGTERM and Ctrl-C stop a command, and are never lost on the way.

A Python signal handler runs in the main thread between two bytecodes, which
may be inside a weakref callback, a ``__del__`` or a garbage-collector hook.
An exception raised there does not propagate: Python prints "Exception ignored
in ..." and drops it, and the command would run on to the end as if it had not
been stopped (seen under load: a SIGTERM to `pitfall run` landed in a weakref
callback while Prefect's handler was installed, and the run finished `ok`).
While a command runs, such a dropped stop is sent again, a moment later, to the
handler installed then (ours, or Prefect's during a flow), until it lands.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal


class Stopped(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Delivery:
    """One command's stops: which were dropped, whether one has landed since, and
    the timers that re-send them."""

    def __init__(self):
        self.dropped: int | None = None
        self.landed = threading.Event()
        self.timers: list[threading.Timer] = []

    def stop(self, signum: int, frame) -> None:
        """The SIGTERM handler."""
        self.landed.set()
        signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Stopped(signum)

    def dropped_in_callback(self, signum: int) -> None:
        self.dropped = signum
        self.landed.clear()
        # our handler steps aside after its first call; a dropped stop has not been
        # handled, so it is armed again (Prefect's handler stays installed)
        main = threading.current_thread() is threading.main_thread()  # where handlers are set
        if main and signum == signal.SIGTERM and signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, self.stop)
        # from another thread, once the callback that dropped it has returned
        timer = threading.Timer(0.05, self._resend, (signum,))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _resend(self, signum: int) -> None:
        if not self.landed.is_set():  # one that landed meanwhile is being handled
            os.kill(os.getpid(), signum)

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()


def _dropped_signal(exc: BaseException) -> int | None:
    """The signal whose exception ``exc`` is, or None."""
    if isinstance(exc, Stopped):
        return exc.signum
    if isinstance(exc, TerminationSignal):
        return exc.signal
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    return None


@contextlib.contextmanager
def stops_delivered() -> Iterator[None]:
    """Around a command (main thread): SIGTERM raises `Stopped`, and a stop that
    Python dropped in a callback is sent again; one still not delivered when the
    command ends is raised there."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    delivery = _Delivery()
    previous_hook = sys.unraisablehook

    def hook(unraisable) -> None:
        signum = _dropped_signal(unraisable.exc_value) if unraisable.exc_value else None
        if signum is None:
            previous_hook(unraisable)
        else:
            delivery.dropped_in_callback(signum)

    previous = signal.signal(signal.SIGTERM, delivery.stop)
    sys.unraisablehook = hook
    try:
        try:
            yield
        except BaseException:
            delivery.landed.set()  # whatever ends the command, it ends now
            raise
        if delivery.dropped is not None and not delivery.landed.is_set():
            # dropped, then the command finished before the copy landed: it was still asked to stop
            delivery.landed.set()
            raise (
                Stopped(delivery.dropped)
                if delivery.dropped != signal.SIGINT
                else KeyboardInterrupt
            )
    finally:
        delivery.cancel()
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
