"""Processes a test run left behind, found by a mark in their environment.

Every process started by the tests inherits ``PROCESS_MARK=<id>`` (set in
conftest.py, or by .ci/run for the whole `make test`), and keeps it after its
parent dies, when the kernel hands it to another parent. So:

* during the tests, a marked process that no longer descends from pytest is
  an orphan: a child that outlived what started it (conftest checks after
  every test);
* after the tests, any marked process still alive was left behind
  (``python tests/leftovers.py``, run by .ci/run: lists them, kills them and
  exits 1).

The mark is not a PITFALL_* variable: tests clear those.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

MARK_VAR = "PROCESS_MARK"
# seconds a process on its way out may take before it counts as left behind: with
# four busy loops beside the suite a Ray worker took more than 20 s to exit
GRACE_S = 120.0


def marked(mark: str) -> dict[int, str]:
    """pid -> command line of the live processes carrying ``mark`` (zombies carry nothing)."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found[int(entry.name)] = cmd.strip()
    return found


def parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    return int(stat.rsplit(b")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def lineage(pid: int) -> set[int]:
    """``pid`` and its ancestors."""
    seen = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        pid = parent_of(pid)
    return seen


def orphans(mark: str, root: int) -> dict[int, str]:
    """Marked processes that neither descend from ``root`` nor are its ancestors."""
    mine = lineage(root)
    return {p: c for p, c in marked(mark).items() if p not in mine and root not in lineage(p)}


def settle(find, grace_s: float = GRACE_S) -> dict[int, str]:
    """What ``find()`` still returns after up to ``grace_s`` of waiting for it to empty."""
    deadline = time.monotonic() + grace_s
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def main() -> int:
    mark = os.environ.get(MARK_VAR)
    if not mark:
        print(f"{MARK_VAR} is not set: nothing to look for", file=sys.stderr)
        return 2
    me = lineage(os.getpid())
    left = settle(lambda: {p: c for p, c in marked(mark).items() if p not in me})
    for pid, cmd in sorted(left.items()):
        print(f"left behind: pid {pid}: {cmd[:300]}", file=sys.stderr)
    kill(left)
    if not left:
        print("no process left behind")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
