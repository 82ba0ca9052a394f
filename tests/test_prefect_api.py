"""The Prefect API of `pitfall run`: a first start on a fresh PREFECT_HOME while
the machine is busy, and no server left behind by a run that was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from flows.prefect_api import prefect_api
from pipeline.store import Store
from tests import leftovers
from tests.load import busy
from tests.test_run import cli, env, write_config

pytestmark = pytest.mark.slow  # Prefect's API server


def test_first_run_on_a_fresh_prefect_home_works_on_a_busy_machine(tmp_path):
    """Prefect's own ephemeral server gives up after 20 s; its first start
    migrates a new database, which took longer than that on a busy machine."""
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    fresh = env() | {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    with busy(per_core=2):
        for attempt in ("first", "second"):
            done = subprocess.run(
                cli(config, "run", "--stage", "ingest"), env=fresh, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{attempt} run: {done.stderr[-3000:]}"
    with Store.reader(store) as s:
        assert s.query("SELECT status, count(*) FROM runs GROUP BY 1").rows() == [("ok", 2)]


def test_a_server_that_cannot_start_is_one_clear_line(tmp_path):
    config = write_config(tmp_path, tmp_path / "store.duckdb")
    done = subprocess.run(
        cli(config, "run", "--stage", "ingest"),
        env=env() | {"PITFALL_RUN__PREFECT_START_TIMEOUT_S": "0.01"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "error: Prefect's API server did not answer within 0.01 s" in done.stderr
    assert "Traceback" not in done.stderr
    assert leftovers.settle(lambda: _servers_of_mine()) == {}


def test_a_killed_run_leaves_no_prefect_server_or_worker_behind(tmp_path):
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    proc = subprocess.Popen(
        cli(config, "run"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if _traces(store) > 0:  # sampling: the server, the model and the verify pool are up
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    before = _servers_of_mine()
    assert before, "no Prefect server was running under the run"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mark = os.environ["PROCESS_MARK"]
    left = leftovers.settle(lambda: leftovers.orphans(mark, os.getpid()))
    assert left == {}, f"outlived the killed run: {left}"


def test_what_the_run_does_meanwhile_happens_while_the_server_starts():
    """The run imports its engine while the server starts; if that fails, the
    server it started is stopped and the error is the caller's."""
    seen = []
    with prefect_api(120.0, meanwhile=lambda: seen.append(_servers_of_mine())) as url:
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    assert len(seen) == 1 and seen[0], "meanwhile ran once, with the server's process up"

    def fails():
        raise RuntimeError("no engine here")

    with pytest.raises(RuntimeError, match="no engine here"), prefect_api(120.0, meanwhile=fails):
        pytest.fail("the API was handed out after meanwhile failed")
    assert leftovers.settle(_servers_of_mine) == {}


def _traces(store) -> int:
    try:
        with Store.reader(store, open_timeout_s=0.5) as s:
            return s.query("SELECT count(*) FROM traces").item()
    except Exception:  # not there yet, or mid-write
        return 0


def _servers_of_mine() -> dict[int, str]:
    return {
        pid: cmd
        for pid, cmd in leftovers.marked(os.environ["PROCESS_MARK"]).items()
        if "prefect.server.api.server:create_app" in cmd
    }


def test_ctrl_c_stops_a_run_promptly_and_leaves_nothing_behind(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group. The
    API server pitfall started was in that group: it died with the run, which then
    retried its crash report against it for ~90 s and ended in a traceback."""
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    proc = subprocess.Popen(  # its own process group, as a shell starts a job
        cli(config, "run"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while proc.poll() is None and _traces(store) == 0:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    servers = _servers_of_mine()
    assert servers and all(os.getpgid(pid) != proc.pid for pid in servers)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate()[1]
    assert proc.returncode == 130, err[-3000:]
    assert "Connection refused" not in err and "ConnectError" not in err, err[-3000:]
    with Store.reader(store) as s:
        assert s.query("SELECT status FROM runs WHERE command = 'run'").item() == "interrupted"
    mark = os.environ["PROCESS_MARK"]
    assert leftovers.settle(lambda: leftovers.orphans(mark, os.getpid())) == {}
