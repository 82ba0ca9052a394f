"""The store under abuse (issue 11, items 7-10): a second writer through a
symlink, a store written by a newer pitfall, files DuckDB cannot read, a
read-only directory, a full disk, and runs stopped by signals.

Full disks and read-only directories are real: the CLI runs in a user+mount
namespace (``unshare -rm``) over a small tmpfs or a read-only bind mount.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import string
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.sqlfiles import migrations
from pipeline.store import Store, StoreError, StoreLocked
from tests.conftest import GSM8K, MATH500, PREFECT_HOME, REPO

pytestmark = pytest.mark.slow  # CLI subprocesses, a tmpfs in a namespace

CODE_VERSION = max(m.version for m in migrations())


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")}
    return e | {"PREFECT_HOME": PREFECT_HOME, "PYTHONPATH": str(REPO)}


def cli_argv(store: Path, *args) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--store", str(store), *map(str, args)]


def cli(store: Path, *args, **kwargs) -> Result:
    """The real CLI in a process of its own (cwd: the store's folder, so no pitfall.toml)."""
    r = subprocess.run(
        cli_argv(store, *args),
        env=env(),
        cwd=store.parent,
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )
    return Result(r.returncode, r.stdout, r.stderr)


def assert_one_error(result: Result, *words: str) -> str:
    """Exit 1, no traceback, and exactly one `error:` line holding ``words``."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    assert result.returncode == 1, result.stderr[-3000:]
    return errors[0]


def problems(n: int, width: int = 40, seed: int = 0) -> pl.DataFrame:
    from pipeline.rows import problem_key

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = f"{i}: " + "".join(rng.choices(string.ascii_letters + " ", k=width))
        rows.append({"problem_id": problem_key(text, str(i)), "problem": text, "answer": str(i)})
    return pl.DataFrame(rows).with_columns(source=pl.lit("unit"))


def problems_file(path: Path, n: int, width: int = 40) -> Path:
    path.write_text(
        "".join(
            json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n"
            for r in problems(n, width).iter_rows(named=True)
        )
    )
    return path


def small_store(path: Path, rows: int = 50) -> Path:
    with Store.writer(path, command="setup") as store:
        store.insert_new("problems", problems(rows))
    return path


# ------------------------------------------------------------ 7: symlinks


HOLDER = """
import sys
from pipeline.store import Store
store = Store.writer(sys.argv[1], command="holder")
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


@pytest.mark.parametrize("holder_via", ["real path", "symlink"])
@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_second_writer_through_a_symlink_is_locked_out(tmp_path, link, holder_via):
    real = small_store(tmp_path / "data" / "store.duckdb")
    if link == "file":
        alias = tmp_path / "alias.duckdb"
        alias.symlink_to(real)
    else:
        (tmp_path / "alias").symlink_to(real.parent, target_is_directory=True)
        alias = tmp_path / "alias" / "store.duckdb"
    first, second = (real, alias) if holder_via == "real path" else (alias, real)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(first)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match=f"pid {proc.pid}"):
            Store.writer(second, command="intruder")
    finally:
        proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    with Store.writer(second, command="after") as store:
        runs = store.query("SELECT command, status FROM runs ORDER BY started_at").rows()
    assert runs[1:] == [("holder", "ok"), ("after", "running")]


# --------------------------------------------------- 8: a newer store


def from_the_future(path: Path) -> int:
    """Record a schema version above this code's, as a newer pitfall would."""
    newer = CODE_VERSION + 1
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version (version, name) VALUES (?, 'future')", [newer])
    con.close()
    return newer


def test_a_newer_store_refuses_writes_and_is_left_untouched(store_path):
    small_store(store_path)
    newer = from_the_future(store_path)
    before = store_path.read_bytes()
    message = (
        f"store {store_path} has schema version {newer}; "
        rf"this pitfall \(.+\) knows up to {CODE_VERSION}: upgrade pitfall"
    )
    with pytest.raises(StoreError, match=message) as exc:
        Store.writer(store_path, command="old pitfall")
    assert not isinstance(exc.value, StoreLocked)
    assert store_path.read_bytes() == before
    assert not Path(f"{store_path}.wal").exists()
    # the lock was given back: the same refusal again, not "being written by"
    with pytest.raises(StoreError, match=message):
        Store.writer(store_path, command="old pitfall")


def test_a_newer_store_is_read_with_a_warning(store_path):
    small_store(store_path)
    newer = from_the_future(store_path)
    with pytest.warns(UserWarning, match=f"schema version {newer}.*knows up to {CODE_VERSION}"):
        store = Store.reader(store_path)
    assert store.query("SELECT count(*) AS n FROM problems")["n"][0] == 50

    ingest = cli(store_path, "ingest", MATH500, "--preset", "math")
    assert_one_error(ingest, str(store_path), f"schema version {newer}", "upgrade pitfall")
    stats = cli(store_path, "stats")
    assert stats.returncode == 0, stats.stderr[-3000:]
    warnings = [line for line in stats.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"schema version {newer}" in warnings[0], stats.stderr
    assert "problems" in stats.stdout


# ------------------------------------- 9: files DuckDB cannot read or write

# A command of each kind that opens the store, and what it needs to get that far.
COMMANDS = {
    "stats": [],
    "sql": ["select count(*) from problems"],
    "report": [],
    "export": ["--dir", "{tmp}/export"],
    "localize-eval": ["--method", "mc-binary"],
    "ingest": [MATH500, "--preset", "math"],
    "import-traces": [GSM8K, "--preset", "gsm8k", "--generations-col", "answer"],
    "verify": [],
    "segment": [],
    "negatives": [],
    "reweight": [],
}


def _not_duckdb(path: Path) -> Path:
    path.write_bytes(random.Random(0).randbytes(300_000))
    return path


def _cut(path: Path, size: int) -> Path:
    small_store(path, rows=20_000)  # ~5 MB
    with path.open("r+b") as f:
        f.truncate(size)
    return path


# DuckDB files: a 12 KiB header, then 256 KiB blocks; the first holds the catalog.
DAMAGES = {
    "not DuckDB": _not_duckdb,
    "cut in its first block": lambda path: _cut(path, 100_000),
}


def _assert_handled(res, store_path: Path) -> None:
    # handled by the CLI: an escaped exception would be the result's exception
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(store_path) in errors[0], res.output


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_store_is_one_error_line(pitfall, store_path, tmp_path, damage, command):
    DAMAGES[damage](store_path)
    args = [str(a).format(tmp=tmp_path) for a in COMMANDS[command]]
    _assert_handled(pitfall(command, *args, ok=False), store_path)


@pytest.mark.parametrize("command", ["stats", "sql", "ingest", "import-traces"])
def test_a_store_cut_after_its_catalog_is_one_error_line(pitfall, store_path, tmp_path, command):
    """It opens, and fails when a command reads the table data that is gone."""
    _cut(store_path, 12_288 + 262_144)
    args = {"sql": ["select max(problem) from problems"]}.get(command, COMMANDS[command])
    _assert_handled(pitfall(command, *args, ok=False), store_path)


def test_a_damaged_store_is_one_error_line_for_pitfall_run(store_path):
    _not_duckdb(store_path)
    res = cli(store_path, "run", "--stage", "ingest")
    assert_one_error(res, str(store_path), "not a valid DuckDB database file")


def _without_file_permission_override() -> None:
    """Run the child as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so
    that mode 000 keeps it out as it keeps out everyone else."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_store_is_one_error_line(store_path):
    small_store(store_path)
    store_path.chmod(0)
    drop = _without_file_permission_override if os.geteuid() == 0 else None
    for args in (["stats"], ["sql", "select 1"], ["ingest", MATH500, "--preset", "math"]):
        res = cli(store_path, *args, preexec_fn=drop)
        assert_one_error(res, str(store_path), "Permission denied")


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


needs_namespace = pytest.mark.skipif(
    not _namespaces_work(),
    reason="needs unprivileged user+mount namespaces (`unshare -rm`) for a real full disk "
    "and read-only directory",
)

NS_DRIVER = """
import json, subprocess, sys
setup, commands = json.loads(sys.argv[1])
for argv in setup:
    subprocess.run(argv, check=True)
done = [subprocess.run(argv, capture_output=True, text=True) for argv in commands]
print(json.dumps([[r.returncode, r.stdout, r.stderr] for r in done]))
"""


def in_namespace(setup: list[list[str]], *commands: list[str], cwd: Path) -> list[Result]:
    """Run ``setup`` (mounts), then ``commands``, in a user+mount namespace of their own."""
    r = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", NS_DRIVER, json.dumps([setup, commands])],
        env=env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [Result(*x) for x in json.loads(r.stdout)]


@needs_namespace
def test_a_read_only_folder_refuses_writers_in_one_line_and_serves_readers(tmp_path):
    folder = tmp_path / "archive"
    store = small_store(folder / "store.duckdb")
    read_only = [
        ["mount", "--bind", str(folder), str(folder)],
        ["mount", "-o", "remount,ro,bind", str(folder), str(folder)],
    ]
    ingest, stats = in_namespace(
        read_only,
        cli_argv(store, "ingest", MATH500, "--preset", "math"),
        cli_argv(store, "stats"),
        cwd=tmp_path,
    )
    assert_one_error(ingest, str(store), "Read-only file system")
    assert stats.returncode == 0, stats.stderr[-3000:]
    assert "problems" in stats.stdout


@needs_namespace
def test_a_full_disk_reports_no_space_left_in_one_line(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    store = disk / "store.duckdb"
    big = problems_file(tmp_path / "big.jsonl", 12_000, width=400)  # ~5 MB for a 3 MB disk
    ingest, after = in_namespace(
        [["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)]],
        cli_argv(store, "ingest", big),
        cli_argv(store, "sql", "select command, status from runs", "--format", "csv"),
        cwd=tmp_path,
    )
    line = assert_one_error(ingest, str(store), "No space left on device")
    assert "rollback" not in line
    # the store is still readable, and the run was closed as failed
    assert after.returncode == 0, after.stderr[-3000:]
    assert "ingest,failed" in after.stdout.splitlines()


# ----------------------------------------------------------- 10: signals


def lock_holder(store: Path) -> int | None:
    try:
        return json.loads(Path(f"{store}.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def has_run(store: Path, pid: int) -> bool:
    """Whether process ``pid`` has written its row in ``runs`` (read between its batches)."""
    try:
        with Store.reader(store, open_timeout_s=0.2) as s:
            return s.query("SELECT count(*) AS n FROM runs WHERE pid = ?", [pid]).item() > 0
    except Exception:  # not created yet, or held by the writer: look again
        return False


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def reading(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            if fd.readlink() == path:
                return True
        except OSError:
            continue
    return False


def stop_when_writing(
    argv: list[str], store: Path, sig: int, cwd: Path, children: int = 0, input: Path | None = None
) -> tuple[Result, set[int]]:
    """Start ``argv``, wait until it holds the store (has its run row, ``children``
    descendants, ``input`` open), send ``sig``; its result and the descendants it had."""
    proc = subprocess.Popen(
        argv, env=env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    kids: set[int] = set()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if lock_holder(store) == proc.pid and has_run(store, proc.pid):
                kids = descendants(proc.pid)
                if len(kids) >= children and (input is None or reading(proc.pid, input)):
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the command ended before it could be stopped"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Result(proc.returncode, out, err), kids


def run_rows(store: Path, command: str) -> list[dict]:
    with Store.reader(store) as s:
        return s.query(
            "SELECT status, finished_at, summary FROM runs WHERE command = ? ORDER BY started_at",
            [command],
        ).to_dicts()


def assert_stopped(res: Result, sig: int, kids: set[int]) -> None:
    assert res.returncode == 128 + sig, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    name = signal.Signals(sig).name
    assert [x for x in res.stderr.splitlines() if x.startswith("error:")] == [
        f"error: stopped by {name}"
    ], res.stderr[-3000:]
    deadline = time.monotonic() + 10  # a forkserver notices its parent is gone
    while any(alive(p) for p in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in kids if alive(p)], "child processes outlived the command"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_command_marks_its_run_interrupted(pitfall, store_path, tmp_path, sig):
    # GSM8K's reference answers, five distinct copies each: 6,595 traces to verify
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    traces = tmp_path / "traces.jsonl"
    traces.write_text(
        "".join(
            json.dumps(r | {"generations": [f"Take {i}. {r['answer']}" for i in range(5)]}) + "\n"
            for r in rows
        )
    )
    pitfall("import-traces", traces, "--preset", "gsm8k")
    res, kids = stop_when_writing(
        cli_argv(store_path, "verify", "--workers", "2"),
        store_path,
        sig,
        store_path.parent,
        children=3,  # the zygote and two workers
    )
    assert_stopped(res, sig, kids)
    [row] = run_rows(store_path, "verify")
    assert row["status"] == "interrupted"
    assert row["finished_at"] is not None  # it closed itself: it saw the signal
    # the lock is free at once
    Store.writer(store_path, command="next", lock_wait_s=0).close()


def test_a_stopped_pitfall_run_marks_its_run_interrupted(store_path, tmp_path):
    big = problems_file(tmp_path / "big.jsonl", 40_000, width=200)
    config = tmp_path / "pitfall.toml"
    config.write_text(
        textwrap.dedent(f"""
            [store]
            path = "{store_path}"
            [run]
            inputs = ["{big}"]
            on_locked = "exit"
        """)
    )
    argv = [sys.executable, "-m", "flows.cli", "--config", str(config), "run", "--stage", "ingest"]
    # once the ingest task reads its input: Prefect itself fails ("Task run is
    # not set", a traceback) when a signal lands before its task run exists
    res, kids = stop_when_writing(argv, store_path, signal.SIGTERM, tmp_path, children=1, input=big)
    assert_stopped(res, signal.SIGTERM, kids)
    [row] = run_rows(store_path, "run")
    assert row["status"] == "interrupted" and row["finished_at"] is not None
    Store.writer(store_path, command="next", lock_wait_s=0).close()


def test_a_killed_run_is_marked_interrupted_by_the_next_writer(store_path, tmp_path):
    big = problems_file(tmp_path / "big.jsonl", 40_000, width=200)
    res, _ = stop_when_writing(
        cli_argv(store_path, "ingest", big), store_path, signal.SIGKILL, tmp_path
    )
    assert res.returncode == -signal.SIGKILL
    assert [r["status"] for r in run_rows(store_path, "ingest")] == ["running"]
    ok = cli(store_path, "ingest", MATH500, "--preset", "math")
    assert ok.returncode == 0, ok.stderr[-3000:]
    killed, later = run_rows(store_path, "ingest")
    assert later["status"] == "ok"
    assert killed["status"] == "interrupted"
    assert killed["finished_at"] is None  # when it died is not known
    assert "no live writer" in killed["summary"]


DROPPED_STOP = """
import os, signal, time, weakref
from contextlib import nullcontext

import typer
from prefect.utilities.engine import capture_sigterm

from flows.cli.common import _Commands

app = typer.Typer(cls=_Commands)


class Thing:
    pass


@app.command()
def work(under_prefect: bool = False, sleep: float = 20) -> None:
    def stop_inside_a_callback(_):
        # the handler runs as os.kill returns, here, where Python drops its exception
        os.kill(os.getpid(), signal.SIGTERM)

    with capture_sigterm() if under_prefect else nullcontext():  # Prefect's handler, as in a flow
        thing = Thing()
        ref = weakref.ref(thing, stop_inside_a_callback)
        del thing
        time.sleep(sleep)
    print("ran to the end")


@app.command()
def idle() -> None:
    pass


if __name__ == "__main__":
    app()
"""


@pytest.mark.parametrize(
    "args",
    [[], ["--under-prefect"], ["--sleep", "0"]],
    ids=["cli-handler", "prefect-handler", "just-before-the-end"],
)
def test_a_stop_dropped_in_a_callback_still_stops_the_command(tmp_path, args):
    # seen under load: a SIGTERM to `pitfall run` landed in a weakref callback and
    # the run finished `ok`; here the signal is sent from inside such a callback
    script = tmp_path / "dropped_stop.py"
    script.write_text(DROPPED_STOP)
    argv = [sys.executable, str(script), "work", *args]
    r = subprocess.run(argv, env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 128 + signal.SIGTERM, r.stdout + r.stderr
    # stopped where it was, or (dropped as the command returned) when it ended
    assert ("ran to the end" in r.stdout) == (args == ["--sleep", "0"])
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: stopped by SIGTERM"
