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

import ctypes
import os
import signal
import sys

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


def guarded(argv: list[str], sig: int = signal.SIGTERM) -> list[str]:
    """``argv`` wrapped so that the program gets ``sig`` when this process dies."""
    return [sys.executable, "-m", "pipeline.procs", str(os.getpid()), str(int(sig)), "--", *argv]


if __name__ == "__main__":
    parent, sig, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        sys.exit("usage: python -m pipeline.procs PARENT_PID SIGNAL -- COMMAND ...")
    die_with_parent(int(sig), int(parent))
    os.execvp(command[0], command)
