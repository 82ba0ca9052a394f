"""Child processes that die with the process that started them.

A SIGKILLed pitfall runs no clean-up code, so every long-lived child it starts
must notice on its own. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``)
does that in the kernel: it fires even when the child is stuck in C code, and
it survives ``exec``. It fires when the *thread* that started the child ends,
so start such children from a thread that lives as long as they should (the
CLI's main thread), or watch a pipe as well (``pipeline/verify_pool.py``).

``python -m pipeline.procs PARENT_PID -- CMD ...`` runs CMD under that guard:
it is how pitfall starts a program it does not own (Prefect's API server).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies.

    ``parent_pid`` closes the race of a parent that died before the call: if
    this process has been handed to another parent already, exit now.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def guarded(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the program gets SIGTERM (time to clean up) when
    this process dies."""
    sig = int(signal.SIGTERM)
    return [sys.executable, "-m", "pipeline.procs", str(os.getpid()), str(sig), "--", *argv]


@contextlib.contextmanager
def scoped_env(
    values: dict[str, str], *, override: bool = True, keep_out: tuple[str, ...] = ()
) -> Iterator[None]:
    """Set ``values`` (only where unset, unless ``override``) for the ``with``
    block, then put them and the ``keep_out`` variables back as they were: what
    children started later inherit is decided here, not by what ran meanwhile."""
    before = {k: os.environ.get(k) for k in (*values, *keep_out)}
    for k, v in values.items():
        if override:
            os.environ[k] = v
        else:
            os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    parent, sig, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        sys.exit("usage: python -m pipeline.procs PARENT_PID SIGNAL -- COMMAND ...")
    die_with_parent(int(sig), int(parent))
    os.execvp(command[0], command)
