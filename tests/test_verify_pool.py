"""The verification pool under load, with workers that die, and with parents that die.

Real worker processes and real signals; the load is shell loops spinning on
the cores (tests/load.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.store import Store
from pipeline.verify import Check, VerifyPool
from pipeline.verify_pool import _cpu_seconds
from tests import leftovers
from tests.conftest import REPO
from tests.load import busy

pytestmark = pytest.mark.slow  # verification workers, CLI subprocesses, busy loops

TOWER = "2^{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}"  # computes far past any budget, inside C code
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")


def sum_of(n: int, plus: int = 0) -> Check:
    """1 + 2 + ... + n (+ plus): about 0.5 ms of CPU per term to check, and correct."""
    terms = [str(i) for i in range(1, n + 1)] + ([str(plus)] if plus else [])
    return Check(str(n * (n + 1) // 2 + plus), "+".join(terms))


def mixed_batch() -> list[Check]:
    return (
        [Check(str(i), f"{i}") for i in range(20)]
        + [Check(str(i), f"{i + 1}") for i in range(5)]  # wrong
        + [sum_of(n, plus) for n in (300, 400) for plus in (0, 1)]  # a few tenths of a second
        + [Check("\\frac{1}{2}", "0.5"), Check("x^2+2x+1", "(x+1)^2")]
    )


@two_cores
def test_a_busy_core_changes_no_verdict():
    """The budget is CPU time: a worker sharing its core with four spinning
    loops gets a fifth of it and takes five times as long by the clock, and
    the verdicts stay those of an idle machine. (With a wall-clock budget the
    sums came back ``timeout``.)"""
    checks = mixed_batch()
    with VerifyPool(workers=2, timeout_s=1.0) as pool:
        idle = [o.status for o in pool.run(checks)]
    assert idle.count("correct") == len(checks) - 5 and idle.count("wrong") == 5
    core = min(os.sched_getaffinity(0))
    others = sorted(os.sched_getaffinity(0) - {core})
    with (
        busy(per_core=4, cores=[core]),
        busy(per_core=2, cores=others),
        VerifyPool(workers=2, timeout_s=1.0) as pool,
    ):
        for pid in [pool._zygote.proc.pid, *pool.pids]:  # replacements fork from the zygote
            os.sched_setaffinity(pid, {core})
        t0 = time.monotonic()
        loaded = pool.run(checks)
        elapsed = time.monotonic() - t0
    assert [o.status for o in loaded] == idle
    # the sums did take longer than their budget by the clock: the load was real
    assert max(o.seconds for o in loaded) > 1.0 or elapsed > 3.0


def test_an_item_over_budget_is_retried_on_a_fresh_worker_then_timeout():
    with VerifyPool(workers=1, timeout_s=1.0) as pool:
        first = pool.pids
        t0 = time.monotonic()
        tower, after = pool.run([Check("2", TOWER), Check("3", "3")])
        elapsed = time.monotonic() - t0
        assert pool.pids != first  # replaced
    assert tower.status == "timeout" and tower.detail == "over 1 s of CPU, twice"
    assert after.status == "correct"
    assert elapsed >= 2.0  # two full budgets, one per worker


def test_workers_that_never_begin_are_replaced_without_a_verdict():
    """Stopped workers (SIGSTOP) use no CPU: the stall limit replaces them and
    their items go to fresh workers, so nothing is lost or mislabelled."""
    with VerifyPool(workers=2, timeout_s=0.3) as pool:
        stopped = pool.pids
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        out = pool.run([Check(str(i), str(i)) for i in range(10)])
        assert not set(pool.pids) & set(stopped)
    assert {o.status for o in out} == {"correct"}


def test_a_worker_killed_mid_item_gives_error_and_the_rest_is_verified():
    checks = [Check("2", TOWER)] + [Check(str(i), str(i)) for i in range(30)]
    with VerifyPool(workers=2, timeout_s=120.0) as pool:
        killer = threading.Thread(target=_kill_the_busy_worker, args=(pool.pids,), daemon=True)
        killer.start()
        t0 = time.monotonic()
        out = pool.run(checks)
        assert time.monotonic() - t0 < 60
        killer.join()
        assert len(pool.pids) == 2 and all(_cpu_seconds(p) is not None for p in pool.pids)
        again = pool.run([Check("5", "5")])  # the replacement works
    assert out[0].status == "error" and "died" in out[0].detail
    assert {o.status for o in out[1:]} == {"correct"}
    assert again[0].status == "correct"


def _kill_the_busy_worker(pids: list[int], cpu_s: float = 0.5) -> None:
    start = {p: _cpu_seconds(p) or 0.0 for p in pids}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in pids:
            if (_cpu_seconds(p) or 0.0) - start[p] > cpu_s:
                os.kill(p, signal.SIGKILL)
                return
        time.sleep(0.05)


# ------------------------------------------------------------ through the CLI


def _store_with_answers(tmp_path: Path, answers: list[tuple[str, str]]) -> Path:
    """A store holding one problem per (gold, completion) pair, with that completion as a trace."""
    src = tmp_path / "traces.jsonl"
    src.write_text(
        "".join(
            json.dumps({"problem": f"Problem {i}: give {gold}.", "answer": gold, "generations": c})
            + "\n"
            for i, (gold, c) in enumerate(answers)
        )
    )
    store = tmp_path / "store.duckdb"
    subprocess.run(_cli(store, "import-traces", src), check=True, capture_output=True)
    return store


def _cli(store: Path, *args) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--store", str(store), *map(str, args)]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")} | {
        "PYTHONPATH": str(REPO)
    }


def _statuses(store: Path) -> dict[str, int]:
    with Store.reader(store) as s:
        return dict(s.query("SELECT status, count(*) FROM verdicts GROUP BY 1").iter_rows())


TRIVIAL = [(str(i), f"so the answer is \\boxed{{{i}}}") for i in range(20)]


def test_cli_verify_on_a_busy_machine_gives_the_idle_verdicts(tmp_path):
    """The reviewer's case: `pitfall verify` on 20 trivially correct answers
    under load marked 14 of them ``timeout``: the workers imported the whole
    CLI on the first item's clock."""
    store = _store_with_answers(tmp_path, TRIVIAL)
    with busy(per_core=2):
        done = subprocess.run(
            _cli(store, "verify", "--timeout", "3"), env=_env(), capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _statuses(store) == {"correct": 20}


def _workers_of(cli_pid: int) -> list[int]:
    """The processes two levels under a CLI process: its verification workers."""
    procs = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    children = {pid for pid in procs if leftovers.parent_of(pid) == cli_pid}
    return [pid for pid in procs if leftovers.parent_of(pid) in children]


def _wait_for_busy_worker(proc: subprocess.Popen, cpu_s: float = 5.0) -> int:
    """The pid of a worker of ``proc`` that has spent ``cpu_s`` of CPU: longer than
    any start-up, so it is in the middle of the tower."""
    deadline = time.monotonic() + 120
    seen: dict[int, float] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        for pid in _workers_of(proc.pid):
            cpu = _cpu_seconds(pid)
            if cpu is None:
                continue
            seen.setdefault(pid, cpu)
            if cpu - seen[pid] > cpu_s:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker got busy (exit code {proc.poll()})")


def test_cli_verify_survives_a_worker_killed_mid_item(tmp_path):
    store = _store_with_answers(tmp_path, [("2", f"\\boxed{{{TOWER}}}"), *TRIVIAL])
    proc = subprocess.Popen(
        _cli(store, "verify", "--timeout", "120"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.kill(_wait_for_busy_worker(proc), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert _statuses(store) == {"correct": 20, "error": 1}


def test_killing_pitfall_verify_leaves_no_process_behind(tmp_path):
    store = _store_with_answers(tmp_path, [("2", f"\\boxed{{{TOWER}}}"), *TRIVIAL])
    proc = subprocess.Popen(
        _cli(store, "verify", "--timeout", "120"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    busy_worker = _wait_for_busy_worker(proc)
    proc.kill()
    proc.wait()
    mark = os.environ["PROCESS_MARK"]

    def still_running() -> dict[int, str]:
        # a worker that is exiting can no longer show its environment (its memory,
        # gigabytes of a tower's digits, is being freed): look for it by pid too
        busy = {busy_worker: "the busy worker"} if leftovers.alive(busy_worker) else {}
        return leftovers.orphans(mark, os.getpid()) | busy

    left = leftovers.settle(still_running)
    assert left == {}, f"still running after their parent was killed: {left}"


def test_verify_again_replaces_the_timeouts_an_older_pool_wrote(tmp_path):
    """Stores verified by the clock-timed pool hold spurious ``timeout`` verdicts,
    and a plain `pitfall verify` never looks at a trace that has a verdict."""
    store = _store_with_answers(tmp_path, [*TRIVIAL[:5], ("2", f"\\boxed{{{TOWER}}}")])
    subprocess.run(_cli(store, "verify", "--timeout", "1"), env=_env(), check=True)
    with Store.writer(store, command="an older pitfall") as s:  # as its load-bound pool left them
        s.execute("UPDATE verdicts SET status = 'timeout' WHERE extracted <> ?", [TOWER])
    assert _statuses(store) == {"timeout": 6}
    subprocess.run(_cli(store, "verify"), env=_env(), check=True)
    assert _statuses(store) == {"timeout": 6}  # nothing without a verdict
    again = subprocess.run(
        _cli(store, "verify", "--again", "timeout", "--timeout", "1"),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert _statuses(store) == {"correct": 5, "timeout": 1}  # replaced, not added
