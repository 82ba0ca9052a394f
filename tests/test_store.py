import json
import os
import subprocess
import sys
import textwrap
import time

import duckdb
import polars as pl
import pytest

from pipeline.rows import problem_key
from pipeline.sqlfiles import Migration
from pipeline.store import QueryError, Store, StoreLocked, StoreMissing

DESIGN_TABLES = {
    "problems",
    "traces",
    "verdicts",
    "steps",
    "rollouts",
    "step_values",
    "first_errors",
    "difficulty",
    "pairs",
    "runs",
    "quarantine",
}


def problems(n: int, start: int = 0) -> pl.DataFrame:
    rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(start, start + n)]
    return pl.DataFrame(rows).with_columns(
        problem_id=pl.struct("problem", "answer").map_elements(
            lambda r: problem_key(r["problem"], r["answer"]), return_dtype=pl.String
        ),
        source=pl.lit("unit"),
    )


def test_new_store_has_every_design_table_with_a_primary_key(store_path):
    with Store.writer(store_path, command="test") as store:
        keys = store.query(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'"
        )
        assert store.schema_version() == 9
    tables = set(keys["table_name"])
    assert tables >= DESIGN_TABLES
    assert all(len(cols) == 1 for cols in keys["constraint_column_names"])


def test_insert_new_skips_existing_and_repeated_keys(store_path):
    with Store.writer(store_path, command="test", batch_rows=7) as store:
        first = store.insert_new("problems", problems(20))
        assert (first.inserted, first.skipped) == (20, 0)
        # 10 old + 10 new, and the new ones twice within the same input
        again = pl.concat([problems(20, start=10), problems(10, start=20)])
        second = store.insert_new("problems", again)
        assert (second.inserted, second.skipped) == (10, 20)
        counts = store.query("SELECT count(*) AS n, count(DISTINCT problem_id) AS d FROM problems")
    assert counts.row(0) == (30, 30)


def test_every_row_records_its_run(store_path):
    with Store.writer(store_path, command="first") as store:
        store.insert_new("problems", problems(3))
        run1 = store.run_id
    with Store.writer(store_path, command="second") as store:
        store.insert_new("problems", problems(5))
        run2 = store.run_id
    with Store.reader(store_path) as store:
        by_run = dict(store.query("SELECT run_id, count(*) FROM problems GROUP BY 1").iter_rows())
        runs = store.query(
            "SELECT run_id, command, status, finished_at FROM runs ORDER BY started_at"
        )
    assert by_run == {run1: 3, run2: 2}
    assert runs["command"].to_list() == ["first", "second"]
    assert runs["status"].to_list() == ["ok", "ok"]
    assert runs["finished_at"].null_count() == 0


def test_failed_run_is_marked_and_its_committed_batches_kept(store_path):
    with pytest.raises(RuntimeError), Store.writer(store_path, command="boom") as store:
        store.insert_new("problems", problems(4))
        raise RuntimeError("stage failed")
    with Store.reader(store_path) as store:
        assert store.query("SELECT status FROM runs")["status"].to_list() == ["failed"]
        assert store.query("SELECT count(*) AS n FROM problems")["n"][0] == 4


def test_reader_cannot_write_and_missing_store_is_clear(store_path):
    with pytest.raises(StoreMissing, match="no store at"):
        Store.reader(store_path)
    Store.writer(store_path, command="create").close()
    reader = Store.reader(store_path)
    with pytest.raises(QueryError, match="read-only"):
        reader.query("DELETE FROM problems")


def test_readers_get_in_between_writer_batches(store_path):
    with Store.writer(store_path, command="writer") as store:
        store.insert_new("problems", problems(3))
        # the writer holds the lock but not the file: a reader opens at once
        with Store.reader(store_path, open_timeout_s=0) as reader:
            assert reader.query("SELECT count(*) AS n FROM problems")["n"][0] == 3
        store.insert_new("problems", problems(2, start=3))


@pytest.mark.slow
def test_reader_waits_for_a_batch_in_progress(store_path, tmp_path):
    Store.writer(store_path, command="create").close()
    script = textwrap.dedent(f"""
        import sys, time
        from pipeline.store import Store
        store = Store.writer({str(store_path)!r}, command="slow batch")
        with store.connection():
            print("holding", flush=True)
            time.sleep(1.5)
        store.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        with Store.reader(store_path, open_timeout_s=20) as reader:
            n = reader.query("SELECT count(*) AS n FROM runs")["n"][0]
        waited = time.monotonic() - t0
    finally:
        proc.wait(timeout=30)
    assert n == 2
    assert waited > 0.5  # it did wait for the batch rather than fail


@pytest.mark.slow
def test_second_writer_fails_fast_naming_the_holder(store_path):
    script = textwrap.dedent(f"""
        import time
        import polars as pl
        from pipeline.store import Store
        store = Store.writer({str(store_path)!r}, command="holder")
        store.insert_new("quarantine", pl.DataFrame({{
            "quarantine_id": ["q1"], "stage": ["t"], "source": ["s"], "reason": ["r"]}}))
        print("ready", flush=True)
        time.sleep(3)
        store.insert_new("quarantine", pl.DataFrame({{
            "quarantine_id": ["q2"], "stage": ["t"], "source": ["s"], "reason": ["r"]}}))
        store.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        with pytest.raises(StoreLocked) as exc:
            Store.writer(store_path, command="intruder")
        assert time.monotonic() - t0 < 1.0
        assert f"pid {proc.pid}" in str(exc.value)
        assert "holder" in str(exc.value)
    finally:
        assert proc.wait(timeout=30) == 0
    with Store.reader(store_path) as store:
        assert store.query("SELECT quarantine_id FROM quarantine ORDER BY 1")[
            "quarantine_id"
        ].to_list() == ["q1", "q2"]
        assert store.query("SELECT command, status FROM runs").rows() == [("holder", "ok")]


@pytest.mark.slow
def test_lock_of_a_killed_writer_is_released(store_path):
    script = textwrap.dedent(f"""
        import os, signal
        from pipeline.store import Store
        Store.writer({str(store_path)!r}, command="doomed")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], check=False)
    with Store.writer(store_path, command="next") as store:
        statuses = dict(store.query("SELECT command, status FROM runs").iter_rows())
    # the lock proves the doomed writer is gone: the next one marks its run
    assert statuses == {"doomed": "interrupted", "next": "running"}


def test_older_store_upgrades_without_loss(store_path):
    with Store.writer(store_path, command="v1") as store:
        store.insert_new("problems", problems(5))
    add_column = Migration(90, "problem_tags", "ALTER TABLE problems ADD COLUMN tags VARCHAR[];")
    with Store.writer(store_path, command="v2", extra_migrations=[add_column]) as store:
        assert store.schema_version() == 90
        cols = store.query("SELECT column_name FROM duckdb_columns() WHERE table_name = 'problems'")
        assert "tags" in cols["column_name"].to_list()
        assert store.query("SELECT count(*) AS n FROM problems")["n"][0] == 5
    # applied once: opening again with the same migration does nothing
    with Store.writer(store_path, command="v2 again", extra_migrations=[add_column]) as store:
        assert store.query("SELECT version, name FROM schema_version ORDER BY 1").rows() == [
            (1, "schema"),
            (2, "optional_gold"),
            (3, "sft_selection"),
            (4, "trace_outcomes"),
            (5, "failed_requests"),
            (6, "frozen_difficulty"),
            (7, "rebuild_rollout_labels"),
            (8, "evals"),
            (9, "eval_problem_counts"),
            (90, "problem_tags"),
        ]


def test_failed_migration_leaves_the_store_as_it_was(store_path):
    with Store.writer(store_path, command="v1") as store:
        store.insert_new("problems", problems(2))
    broken = Migration(
        90, "broken", "ALTER TABLE problems ADD COLUMN x INT; SELECT * FROM nowhere;"
    )
    with pytest.raises(duckdb.Error):
        Store.writer(store_path, command="v2", extra_migrations=[broken])
    with Store.writer(store_path, command="after") as store:
        assert store.schema_version() == 9
        cols = store.query("SELECT column_name FROM duckdb_columns() WHERE table_name = 'problems'")
        assert "x" not in cols["column_name"].to_list()


def test_run_records_the_resolved_config(store_path):
    with Store.writer(store_path, command="cfg", config={"dart": {"k_u": 3}}) as store:
        cfg = store.query("SELECT config FROM runs")["config"][0]
    assert json.loads(cfg) == {"dart": {"k_u": 3}}
    assert os.path.exists(str(store_path) + ".lock")


def test_an_older_store_loses_the_derived_rows_made_the_wrong_way(store_path, monkeypatch):
    """Migration 007: Monte-Carlo labels and values made from rollouts credited with
    the prefix's numbers, labels of truncated traces, step / first-pit / stepwise pairs
    and pairs with chosen == rejected go; imported labels, judge labels of wrong
    traces and other pairs stay."""
    import pipeline.store as store_module
    from pipeline.rows import first_error_frame, first_error_row, pair_row

    older = [m for m in store_module.migrations() if m.version < 7]
    monkeypatch.setattr(store_module, "migrations", lambda: older)
    labels = [("W", "mc-binary"), ("T", "judge"), ("W", "judge"), ("T", "annotated")]
    pairs = [("step", "a", "b"), ("stepwise", None, None), ("outcome", "a", "b")]
    pairs.append(("outcome", "same", "same"))
    with Store.writer(store_path, command="v6") as s:
        assert s.schema_version() == 6
        s.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": t, "trace_id": t, "verifier": "v", "status": status}
                    for t, status in [("W", "wrong"), ("T", "truncated")]
                ]
            ),
        )
        rows = [first_error_row(t, m, 1, 0, 0, {}) for t, m in labels]
        s.insert_new("first_errors", first_error_frame(rows))
        s.insert_new(
            "step_values",
            pl.DataFrame(
                [
                    {"value_id": "v1", "trace_id": "W", "prefix_len": 1, "policy": "p"}
                    | {"k": 8, "n_correct": 4, "value": 0.5}
                ]
            ),
        )
        s.insert_new(
            "pairs",
            pl.DataFrame(
                [
                    pair_row(kind, "P", "q", c, r, None, "W", {}, kind, i)
                    for i, (kind, c, r) in enumerate(pairs)
                ]
            ),
        )
    monkeypatch.undo()
    with Store.writer(store_path, command="v7") as s:
        assert s.schema_version() == 9
        kept = s.query("SELECT trace_id, method FROM first_errors ORDER BY 1, 2").rows()
        assert kept == [("T", "annotated"), ("W", "judge")]
        assert s.query("SELECT count(*) FROM step_values").item() == 0
        assert s.query("SELECT kind, chosen FROM pairs").rows() == [("outcome", "a")]


def test_a_reader_of_an_older_store_says_how_to_bring_it_up_to_date(store_path, monkeypatch):
    """Readers never migrate, so a query naming what a newer schema added fails:
    the error says why and what fixes it."""
    from pipeline import store as store_module

    older = [m for m in store_module.migrations() if m.version < 9]
    monkeypatch.setattr(store_module, "migrations", lambda: older)
    monkeypatch.setattr(store_module, "eval_macros_sql", lambda: "SELECT 1")  # v8 had none
    with Store.writer(store_path, command="v8"):
        pass
    monkeypatch.undo()
    with Store.reader(store_path) as s, pytest.raises(QueryError) as caught:
        s.query("SELECT * FROM eval_problem_counts(['set'])")
    assert "the store has schema version 8, this pitfall 9" in str(caught.value)
    assert "`pitfall verify`" in str(caught.value)
