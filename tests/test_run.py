"""`pitfall run`: the curate flow end to end under Prefect (ephemeral server,
isolated PREFECT_HOME), incremental reruns, SIGKILL at several points, the
store lock between runs, and the Ray path.

The runs use the transformers backend: it generates each request on its own
with its own seed, so a resumed or sharded run produces exactly the text an
uninterrupted one does, and the tables can be compared key for key.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline.store import Store, StoreMissing
from pipeline.verify import VERIFIER
from tests.conftest import REPO, Pitfall
from tests.curated_run import ORPHANS, cli, env, keys, last_run_summary, write_config

# `pitfall run` in a subprocess, with Prefect. The reference fixture's two runs take
# ~70 s on an idle machine and ~10 min with both cores kept busy by four other
# processes (torch's two threads then wait on each other): 600 s is not enough.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def stage(summary: dict, name: str) -> dict:
    return next(s for s in summary["stages"] if s["stage"] == name)


def test_run_completes_every_stage_and_prints_the_summary(reference):
    s = reference["first"]
    assert [x["stage"] for x in s["stages"]] == [
        "ingest",
        "sample",
        "segment",
        "localize",
        "negatives",
        "reweight",
        "export",
    ]
    assert stage(s, "ingest")["rows_out"] == 6
    assert stage(s, "sample")["rows_out"] == 36  # 6 problems x 6 samples
    assert stage(s, "localize")["rollouts"] > 0
    k = reference["keys"]
    assert len(k["traces"]) == 36 and len(k["verdicts"]) == 36
    assert k["first_errors"] and k["pairs"] and k["sft_selection"]
    assert (reference["folder"] / "export" / "README.md").is_file()
    out = reference["output"]
    for words in ("problems", "pass rate", "localized failures", "pairs: outcome", "exported"):
        assert words in out, words
    assert "pitfall report" in out
    # --profile: where each stage's time went, also kept in runs.summary
    assert "where the time went" in out
    sampled = stage(s, "sample")
    calls = sampled["detail"]["profile"]["generate calls"]
    assert calls["calls"] == sampled["rows_in"]  # transformers: one request per poll
    assert calls["tokens"] == sampled["tokens"] > 0
    assert sampled["detail"]["profile"]["seconds"]["engine start"] > 0
    again = stage(reference["second"], "sample")["detail"]["profile"]
    assert "generate calls" not in again and again["seconds"]["engine start"] == 0
    # a truncated or answerless trace is never localized, so no step pair rejects
    # one of its fragments; each is counted instead
    with Store.reader(reference["store"]) as store:
        outcomes = dict(
            store.query(
                "SELECT status, count(*) FROM trace_outcomes(?) GROUP BY 1", [VERIFIER]
            ).iter_rows()
        )
        rejected = store.query(
            "SELECT o.status FROM pairs p JOIN trace_outcomes(?) o "
            "ON o.trace_id = p.rejected_trace_id WHERE p.kind = 'step'",
            [VERIFIER],
        )["status"]
    assert set(rejected) <= {"wrong"}
    for status in ("truncated", "no_answer"):
        n = stage(s, "localize")["skipped"].get(f"{status} (not localized)", 0)
        assert n == outcomes.get(status, 0), status


def test_each_run_publishes_its_summary_as_a_prefect_artifact(reference):
    """What the UI shows on a flow run's page, read from the Prefect server's own
    database (the runs used the tests' PREFECT_HOME): one artifact per run."""
    import sqlite3

    from flows.curate import ARTIFACT_KEY
    from tests.conftest import PREFECT_HOME

    with Store.reader(reference["store"]) as store:
        run_ids = store.query("SELECT run_id FROM runs WHERE command = 'run'")["run_id"]
    db = sqlite3.connect(Path(PREFECT_HOME) / "prefect.db")
    rows = db.execute(
        "SELECT description, data FROM artifact WHERE key = ?", (ARTIFACT_KEY,)
    ).fetchall()
    # the description reads "pitfall run RUN_ID: ..."
    ours = {d.split()[2].rstrip(":"): data for d, data in rows}
    assert set(run_ids) <= set(ours)
    for run_id in run_ids:
        for words in ("| sample |", "| localize |", "| problems | 6 |", "| pairs: step |"):
            assert words in ours[run_id], (run_id, words)


def test_the_libraries_messages_go_to_the_log_file_not_the_console(reference):
    """Prefect's run lines, transformers' and torch's warnings: in logs/pitfall.log
    beside the store; the console keeps pitfall's own output."""
    console = reference["output"] + reference["errors"]
    for noise in ("| INFO    |", "Beginning flow run", "Loading weights", "Warning"):
        assert noise not in console, noise
    log = (reference["store"].parent / "logs" / "pitfall.log").read_text()
    assert "Beginning flow run" in log and "prefect.flow_runs" in log


def test_second_run_on_unchanged_input_does_nothing_new(reference):
    s = reference["second"]
    assert stage(s, "ingest")["rows_out"] == 0
    assert stage(s, "sample")["rows_out"] == 0  # no sampling
    assert stage(s, "sample")["detail"]["verdicts"] == {}  # no verification
    assert stage(s, "localize")["rollouts"] == 0  # no rollouts
    assert stage(s, "negatives")["rows_out"] == 0
    assert keys(reference["store"]) == reference["keys"]


def test_run_localizes_with_the_configured_method(reference, tmp_path):
    """With `[localize] method = "judge"` the run used to localize with mc-binary,
    then build no step pairs from the judge labels it never wrote, counting nothing."""
    store = tmp_path / "store.duckdb"
    shutil.copy(reference["store"], store)
    with Store.writer(store, command="test") as s:  # keep the traces, forget labels and pairs
        s.execute("DELETE FROM pairs")
        s.execute("DELETE FROM first_errors")
    localize = 'method = "judge"\njudge_n = 2\njudge_max_tokens = 48'
    config = write_config(tmp_path, store, localize=localize)
    done = subprocess.run(cli(config, "run"), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_run_summary(store)
    assert stage(summary, "localize")["detail"]["method"] == "judge"
    with Store.reader(store) as s:
        methods = dict(s.query("SELECT method, count(*) FROM first_errors GROUP BY 1").iter_rows())
        wrong = s.query(
            "SELECT count(*) FROM trace_outcomes(?) WHERE status IN ('wrong', 'no_answer', 'truncated')",
            [VERIFIER],
        ).item()
        steps = s.query(
            "SELECT json_extract(p.meta, '$.first_error')::INT AS used, f.first_error AS label "
            "FROM pairs p JOIN first_errors f ON f.trace_id = p.rejected_trace_id "
            "AND f.method = 'judge' WHERE p.kind = 'step'"
        )
        n_step = s.query("SELECT count(*) FROM pairs WHERE kind = 'step'").item()
    assert methods == {"judge": stage(summary, "localize")["rows_out"]} and methods["judge"] > 0
    # every step pair cuts its trace at the judge's label ...
    assert steps.height == n_step and (steps["used"] == steps["label"]).all()
    # ... and every wrong trace is either paired or counted under its reason
    negatives = stage(summary, "negatives")
    skipped = {k: n for k, n in negatives["skipped"].items() if k.startswith("step: ")}
    assert negatives["detail"]["built"]["step"] + sum(skipped.values()) == wrong
    assert skipped.get("step: not localized by the method", 0) < wrong


def _counts(store: Path) -> dict[str, int]:
    try:
        with Store.reader(store, open_timeout_s=0.5) as s:
            return s.table_counts()
    except (StoreMissing, Exception):  # not created yet, or mid-write: look again
        return {}


KILL_POINTS = {
    "sampling": lambda c: 0 < c.get("traces", 0) < 36,
    "verification": lambda c: 0 < c.get("verdicts", 0) < 36,
    "localization": lambda c: c.get("rollouts", 0) > 0 and c.get("first_errors", 0) == 0,
}


def test_sigkill_at_several_points_then_resume(reference, tmp_path):
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    hit = []
    for point, reached in KILL_POINTS.items():
        proc = subprocess.Popen(
            cli(config, "run"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # no deadline of its own: the run ends by itself if the point is never seen,
        # and on a busy machine reaching localization took more than 300 s
        while proc.poll() is None:
            if reached(_counts(store)):
                proc.send_signal(signal.SIGKILL)
                hit.append(point)
                break
            time.sleep(0.02)
        proc.wait()
    assert hit == list(KILL_POINTS), f"killed during {hit} only"
    final = subprocess.run(cli(config, "run"), env=env(), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]
    assert keys(store) == reference["keys"]
    with Store.reader(store) as s:
        for table, sql in ORPHANS.items():
            assert s.query(sql).item() == 0, table
        dup = s.query(
            "SELECT count(*) - count(DISTINCT (problem_id, model, params_id, sample_index)) "
            "FROM traces"
        ).item()
        assert dup == 0
        statuses = dict(s.query("SELECT status, count(*) FROM runs GROUP BY 1").iter_rows())
    assert statuses == {"interrupted": 3, "ok": 1}  # the killed ones, marked by the next run


def test_a_locked_store_makes_a_run_wait_or_exit(tmp_path):
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    only_ingest = cli(config, "run", "--stage", "ingest")
    holder = Store.writer(store, command="someone else")
    try:
        t0 = time.monotonic()
        result = subprocess.run(only_ingest, env=env(), capture_output=True, text=True)
        assert result.returncode == 3, result.stderr[-2000:]
        assert "being written by pid" in result.stderr and time.monotonic() - t0 < 60
        # wait: the run starts as soon as the holder lets go
        threading.Timer(3.0, holder.close).start()
        t0 = time.monotonic()
        waited = subprocess.run(
            [*only_ingest, "--on-locked", "wait"], env=env(), capture_output=True, text=True
        )
        assert waited.returncode == 0, waited.stderr[-2000:]
        assert time.monotonic() - t0 >= 3.0
    finally:
        holder.close()
    with Store.reader(store) as s:
        assert s.query("SELECT count(*) FROM problems").item() == 6
        statuses = s.query("SELECT command, status FROM runs ORDER BY started_at").rows()
    assert statuses == [("someone else", "ok"), ("run", "ok")]


def test_deployment_carries_the_schedule_and_settings(tmp_path):
    from flows.cli.run import curate_deployment
    from pipeline.config import load_settings

    settings = load_settings(write_config(tmp_path, tmp_path / "s.duckdb"))
    d = curate_deployment(settings, "0 3 * * *", "nightly")
    assert d.name == "nightly"
    assert d.schedules[0].schedule.cron == "0 3 * * *"
    assert d.parameters["overrides"]["dart"]["strategy"] == "fixed"
    bad = Pitfall(tmp_path / "s.duckdb")("deploy", "--cron", "every day", ok=False)
    assert bad.exit_code == 2 and "not a cron expression" in bad.output


def test_prefect_yaml_points_at_the_flow():
    import inspect

    import yaml
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]
    path, name = spec["entrypoint"].split(":")
    flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
    assert flow.name == "pitfall-curate"
    assert set(spec["parameters"]) <= set(inspect.signature(flow.fn).parameters)
    assert spec["schedules"][0]["cron"] == "0 3 * * *"


def test_ray_path_gives_the_same_tables(reference, tmp_path):
    pytest.importorskip("ray")
    store = tmp_path / "store.duckdb"
    config = write_config(tmp_path, store)
    result = subprocess.run(
        cli(config, "run", "--ray", "auto"),
        env=env() | {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert keys(store) == reference["keys"]
    with Store.reader(store) as s, Store.reader(reference["store"]) as r:
        for sql in (
            "SELECT trace_id, completion FROM traces ORDER BY 1",
            "SELECT trace_id, status FROM verdicts ORDER BY 1",
            "SELECT trace_id, method, first_error FROM first_errors ORDER BY 1, 2",
            "SELECT rollout_id, correct FROM rollouts ORDER BY 1",
        ):
            assert s.query(sql).equals(r.query(sql)), sql
