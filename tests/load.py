"""Other work on the machine, for tests whose results must not depend on it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def busy(per_core: int = 2, cores: list[int] | None = None) -> Iterator[list[int]]:
    """``per_core`` shell loops spinning on each of ``cores`` (default: every core
    this process may use), stopped by pid afterwards. Yields their pids."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    procs = []
    try:
        for core in cores:
            for _ in range(per_core):
                p = subprocess.Popen(["sh", "-c", "while :; do :; done"])
                os.sched_setaffinity(p.pid, {core})
                procs.append(p)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
