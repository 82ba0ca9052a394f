"""The verification pool: math-verify checks in worker processes, each item on a
CPU-time budget, the same verdicts on an idle and on a busy machine.

Why processes: math-verify's own timeouts use ``signal.alarm``, which works only
in a main thread, and some inputs (towers of powers) compute for minutes inside
C code. So every check runs in a worker's main thread, and the parent kills a
worker that overruns.

How workers start: one zygote process (``python -m pipeline.verify_pool``)
imports math-verify and sympy once and forks a worker on request, so a
replacement is ready in milliseconds, and workers hold nothing else.
multiprocessing's forkserver made every worker import the parent's entry script
first (the ``pitfall`` CLI with Prefect and torch: 5-11 s on a busy machine), on
the first item's clock: 14 of 20 trivially correct answers came back ``timeout``.

The budget: ``timeout_s`` of CPU time, counted from when the worker begins the
item. On a busy machine a check gets a smaller share of a core and takes longer
by the wall clock for the same work, so a wall-clock budget gave verdicts that
depended on the load. An item whose worker has not used its budget but has run
``STALL_FACTOR`` times as long by the wall clock is stopped too (a worker that
waits on something instead of computing). A ``timeout`` is retried once on a
fresh worker before it is final; a worker that dies mid-item gives that item
``error`` and is replaced.

Dying with the parent: the zygote exits when its control socket reaches EOF
(the parent closed the pool or died) or its parent pid changes, and each worker
asks the kernel for SIGKILL when the zygote dies (``pipeline/procs.py``), which
stops it even inside C code.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path

from pipeline.answer_check import Check, Outcome, checked, quiet
from pipeline.procs import die_with_parent

CHUNK = 8  # checks per message to a worker: round trips, not checks, were the cost
STALL_FACTOR = 10  # wall-clock seconds per CPU second of budget before an item counts as stuck
START_TIMEOUT_S = 300.0  # the zygote's imports; minutes only on a machine that is very busy
_TICK = os.sysconf("SC_CLK_TCK")
_SPAWN = b"F"
_READY = b"R"


class VerifyPoolError(RuntimeError):
    """The pool itself cannot work (its processes do not start)."""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------ worker side


def _serve(conn: Connection) -> None:
    """A worker: take chunks of (index, check), say when it begins, answer item by item.
    It ends quietly when the parent has gone (closed the pool, or died)."""
    with contextlib.suppress(EOFError, OSError):
        while (job := conn.recv()) is not None:
            conn.send(("begin", _own_cpu()))
            for index, check in job:
                t0 = time.monotonic()
                status, detail = checked(check)
                conn.send((index, status, detail, time.monotonic() - t0, _own_cpu()))


def _zygote(ctl: socket.socket) -> None:
    """Import once, then fork a worker per request until the parent goes away."""
    parent, me = os.getppid(), os.getpid()
    # Ctrl-C reaches the whole process group: the parent decides what stops, and
    # closing the pool (or dying) stops the zygote and its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet()
    checked(Check("1", "1"))  # loads the LaTeX grammar: forked workers start warm
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
    ctl.sendall(_READY)
    while os.getppid() == parent:
        readable, _, _ = select.select([ctl], [], [], 1.0)
        if not readable:
            continue
        if ctl.recv(1) != _SPAWN:  # EOF: the pool closed or the parent died
            return
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ctl.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            die_with_parent(signal.SIGKILL, me)
            _serve(Connection(theirs.detach()))
            os._exit(0)
        theirs.close()
        socket.send_fds(ctl, [struct.pack("!i", pid)], [ours.fileno()])
        ours.close()


# ------------------------------------------------------------------ parent side


class _Zygote:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)  # where `pipeline` imports from
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.verify_pool", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.sock = ours
        self.sock.settimeout(START_TIMEOUT_S)
        try:
            ready = self.sock.recv(1)
        except TimeoutError:
            ready = b""
        if ready != _READY:
            self.close()
            raise VerifyPoolError(
                f"the verification workers did not start within {START_TIMEOUT_S:g} s "
                f"(exit code {self.proc.poll()}); see the messages above"
            )

    def spawn(self) -> tuple[int, Connection]:
        self.sock.sendall(_SPAWN)
        msg, fds, _, _ = socket.recv_fds(self.sock, 4, 1)
        if len(msg) != 4 or len(fds) != 1:
            raise VerifyPoolError(f"the verification zygote stopped (exit code {self.proc.poll()})")
        os.set_inheritable(fds[0], False)  # no other child of ours may hold a worker's socket
        return struct.unpack("!i", msg)[0], Connection(fds[0])

    def close(self) -> None:
        self.sock.close()  # EOF: the zygote exits, and its workers with it
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Worker:
    """A worker as the parent sees it: the items it holds and the clock of the current one."""

    def __init__(self, pid: int, conn: Connection):
        self.pid, self.conn = pid, conn
        self.items: deque[int] = deque()  # sent, not answered; the first is in progress once begun
        self.began: float | None = None  # wall clock when the current item began
        self.cpu0 = 0.0  # the worker's CPU time then
        self.look_at = 0.0  # when to look at its budget next
        self.why = ""  # why it was stopped

    def start_item(self, now: float, cpu: float, timeout_s: float) -> None:
        self.began, self.cpu0, self.look_at = now, cpu, now + timeout_s

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.conn.close()


class VerifyPool:
    """``workers`` worker processes; an item over its CPU budget is retried once, then ``timeout``."""

    def __init__(self, workers: int, timeout_s: float):
        self.workers = workers
        self.timeout_s = timeout_s
        self._zygote: _Zygote | None = None
        self._workers: list[_Worker] = []
        self._idle_losses = 0  # workers lost in a row before they began anything

    def start(self) -> VerifyPool:
        self._zygote = _Zygote()
        self._workers = [_Worker(*self._zygote.spawn()) for _ in range(self.workers)]
        return self

    def __enter__(self) -> VerifyPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
            w.conn.close()
        self._workers = []
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def run(
        self, checks: Sequence[Check], progress: Callable[[int], None] | None = None
    ) -> list[Outcome]:
        """Outcomes in the order of ``checks``; identical checks are verified once."""
        unique = list(dict.fromkeys(checks))
        results: dict[int, Outcome] = {}
        queue: deque[int] = deque(range(len(unique)))
        retried: set[int] = set()

        def final(index: int, outcome: Outcome) -> None:
            results[index] = outcome
            if progress is not None:
                progress(1)

        while len(results) < len(unique):
            for slot, w in enumerate(self._workers):
                if not w.items and queue:
                    self._workers[slot] = self._send(w, _next_chunk(queue, retried), unique)
            busy = [w for w in self._workers if w.items]
            now = time.monotonic()
            ready = wait([w.conn for w in busy], max(0.0, min(w.look_at for w in busy) - now))
            now = time.monotonic()
            for slot, w in enumerate(self._workers):
                if not w.items:
                    continue
                if w.conn in ready and self._receive(w, final):
                    continue
                if w.conn.closed or (now >= w.look_at and self._over_budget(w, now)):
                    self._workers[slot] = self._retire(w, now, queue, retried, final)
        position = {c: i for i, c in enumerate(unique)}
        return [results[position[c]] for c in checks]

    # ------------------------------------------------------------- internals

    def _send(self, w: _Worker, chunk: list[int], unique: list[Check]) -> _Worker:
        """Hand ``chunk`` to ``w``, or to a fresh worker if ``w`` died while idle."""
        now = time.monotonic()
        for attempt in range(2):
            try:
                w.conn.send([(i, unique[i]) for i in chunk])
                break
            except OSError:
                w.kill()
                if attempt:
                    raise
                w = _Worker(*self._zygote.spawn())  # type: ignore[union-attr]
        w.items.extend(chunk)
        w.began = None
        # until the worker says it has begun, only the stall limit applies
        w.look_at = now + STALL_FACTOR * self.timeout_s
        return w

    def _receive(self, w: _Worker, final) -> bool:
        """Take what ``w`` has said; False if it died (its connection is then closed)."""
        try:
            while w.items and w.conn.poll():
                msg = w.conn.recv()
                now = time.monotonic()
                if msg[0] == "begin":
                    w.start_item(now, msg[1], self.timeout_s)
                    continue
                index, status, detail, seconds, cpu = msg
                w.items.popleft()
                final(index, Outcome(status, round(seconds, 4), detail))
                w.start_item(now, cpu, self.timeout_s)  # it went straight on to the next
            return True
        except (EOFError, OSError):  # it died: killed, out of memory, a crash in C code
            w.conn.close()
            return False

    def _over_budget(self, w: _Worker, now: float) -> bool:
        """Has the current item used its CPU budget, or stalled? If not, when to look again."""
        if w.began is None:
            w.why = f"did not begin within {STALL_FACTOR * self.timeout_s:g} s"
            return True
        cpu = _cpu_seconds(w.pid)
        used = now - w.began if cpu is None else cpu - w.cpu0
        if used >= self.timeout_s:
            w.why = f"over {self.timeout_s:g} s of CPU"
            return True
        if now - w.began >= STALL_FACTOR * self.timeout_s:
            w.why = f"stalled: {used:.1f} s of CPU in {now - w.began:.0f} s"
            return True
        # CPU time grows no faster than the clock: nothing to decide before then
        w.look_at = min(now + self.timeout_s - used, w.began + STALL_FACTOR * self.timeout_s)
        return False

    def _retire(self, w: _Worker, now: float, queue: deque[int], retried: set[int], final):
        """Replace ``w``; its current item is settled or retried, the rest go back in the queue."""
        died = w.conn.closed
        w.kill()
        current = w.items.popleft() if w.began is not None else None
        queue.extendleft(reversed(w.items))
        if current is None:  # nothing was in progress: its items simply go to another worker
            self._idle_losses += 1
            if self._idle_losses > 3:
                raise VerifyPoolError(f"verification workers keep failing before work: {w.why}")
        else:
            self._idle_losses = 0
            seconds = round(now - w.began, 4)
            if died:
                final(current, Outcome("error", seconds, "the verification worker died mid-item"))
            elif current in retried:
                final(current, Outcome("timeout", seconds, f"{w.why}, twice"))
            else:
                retried.add(current)
                queue.appendleft(current)
        return _Worker(*self._zygote.spawn())  # type: ignore[union-attr]


def _next_chunk(queue: deque[int], retried: set[int]) -> list[int]:
    """Up to CHUNK items; an item on its second try goes alone, so its clock is its own."""
    if queue[0] in retried:
        return [queue.popleft()]
    chunk = []
    while queue and len(chunk) < CHUNK and queue[0] not in retried:
        chunk.append(queue.popleft())
    return chunk


if __name__ == "__main__":
    _zygote(socket.socket(fileno=int(sys.argv[1])))
