"""The Prefect API a run talks to: ``PREFECT_API_URL`` when it is set, else a
local server that pitfall starts for the run and stops after it.

Prefect would start such a server itself, but gives it 20 s
(``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``), and its first start on
a fresh ``PREFECT_HOME`` migrates the database: on a busy 2-core machine that
took longer, and the first ``make run`` failed. Its server also outlived a
SIGKILLed run (three were found after one test session). This one is the same
uvicorn command, given ``[run] prefect_start_timeout_s``, and started through
``pipeline.procs`` so that it gets SIGTERM when the process that started it dies.
It runs in its own session: a terminal's Ctrl-C signals the whole foreground
process group, and a server that died with the run left the run retrying its
crash report against it for ~90 s, ending in a traceback. The run stops it
once its logs are sent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.procs import guarded


class PrefectUnavailable(RuntimeError):
    pass


@contextlib.contextmanager
def prefect_api(
    timeout_s: float,
    notice: Callable[[str], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Iterator[str | None]:
    """Yield the API URL the flow will use (None: the one already configured).
    ``meanwhile`` runs while a local server starts (it takes seconds: the caller
    can use them), or right away when there is none."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    meanwhile = meanwhile or (lambda: None)
    if PREFECT_API_URL.value():
        meanwhile()
        yield None
        return
    with (
        _local_server(timeout_s, notice, meanwhile) as url,
        # no UI is served and the server ends with the command: no "View at" links
        temporary_settings({PREFECT_API_URL: url, PREFECT_UI_URL: ""}),
    ):
        yield url


@contextlib.contextmanager
def _local_server(
    timeout_s: float, notice: Callable[[str], None] | None, meanwhile: Callable[[], None]
) -> Iterator[str]:
    import prefect

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(prefect.__file__).parent.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    # as Prefect sets them for its own ephemeral server: no UI, no services
    env = os.environ | {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    url = f"http://127.0.0.1:{port}/api"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            guarded(command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        healthy = False
        try:
            meanwhile()  # beside the server's start; its timeout counts from here
            _wait_healthy(proc, url, timeout_s, log.fileno(), notice)
            healthy = True
            yield url
        finally:
            if healthy and proc.poll() is None:
                _drain_to_server()  # a failed run has logs to send too
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(
    proc: subprocess.Popen,
    url: str,
    timeout_s: float,
    log: int,
    notice: Callable[[str], None] | None,
) -> None:
    import httpx

    t0 = time.monotonic()
    told = False
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise PrefectUnavailable(
                f"Prefect's API server exited with code {proc.returncode}: {_tail(log)}"
            )
        waited = time.monotonic() - t0
        if waited > timeout_s:
            raise PrefectUnavailable(
                f"Prefect's API server did not answer within {timeout_s:g} s "
                f"([run] prefect_start_timeout_s): {_tail(log) or 'it printed nothing'}"
            )
        if not told and waited > 3 and notice:
            notice("starting Prefect's API server (its first start sets up the database)")
            told = True
        time.sleep(0.2)


def _drain_to_server() -> None:
    """Send the run's buffered logs and events while the server still listens: at exit
    Prefect would retry them against a stopped server for over a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: int, chars: int = 600) -> str:
    """The end of what the server printed (read without moving the file offset it writes at)."""
    size = os.fstat(log).st_size
    text = os.pread(log, chars, max(0, size - chars)).decode("utf-8", errors="replace")
    return " ".join(text.split())
