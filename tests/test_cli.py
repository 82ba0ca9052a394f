import json
import re

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.sqlfiles import canned_queries
from tests.conftest import GSM8K, MATH500, TESTDATA, Pitfall


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """One store with the three test sources, shared: every test that uses it only reads."""
    pitfall = Pitfall(tmp_path_factory.mktemp("filled") / "store.duckdb")
    pitfall("ingest", MATH500, "--preset", "math")
    pitfall("ingest", GSM8K, "--preset", "gsm8k")
    pitfall("ingest", TESTDATA / "mixed.jsonl")
    return pitfall


def test_every_command_explains_itself():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = sorted(app.registered_commands, key=lambda c: c.name or c.callback.__name__)
    assert len(commands) >= 15
    for c in commands:
        command = c.name or c.callback.__name__.replace("_", "-")
        assert command in top.output
        res = runner.invoke(app, [command, "--help"])
        assert res.exit_code == 0, command
        assert "Usage: pitfall " + command in res.output
        assert len(res.output.split("Usage:")[1].strip().splitlines()) > 3, command


def test_localize_and_negatives_help_list_the_registered_choices():
    from pipeline.stages.localize import METHODS
    from pipeline.stages.negatives import KINDS

    runner = CliRunner()
    localize = " ".join(runner.invoke(app, ["localize", "--help"]).output.split())
    negatives = " ".join(runner.invoke(app, ["negatives", "--help"]).output.split())
    assert all(m in localize for m in METHODS)
    assert all(k in negatives for k in KINDS)


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["sample", "--backend", "bogus"], "'vllm', 'openai' or 'transformers'"),
        (
            ["localize", "--method", "bogus"],
            "mc-binary, mc-binary-confirmed, mc-linear, prm, judge",
        ),
        (["negatives", "--kinds", "bogus"], "outcome, step, first-pit, stepwise"),
        (["reweight", "--select", "bogus"], "'all', 'uniform', 'prop2diff' or 'first'"),
        (["run", "--stage", "bogus"], "'ingest', 'sample', 'verify'"),
        (["verify", "--workers", "0"], "greater than 0"),
        (["sample", "--k-u", "0"], "greater than 0"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_what_is_allowed(pitfall, args, allowed):
    """Before, `sample --backend bogus` ended in a traceback and `verify --workers 0`
    in a validation error with no flag named."""
    result = pitfall(*args, ok=False)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: [") and allowed in lines[0], lines
    assert "bogus" in lines[0] or "0" in lines[0]
    assert not pitfall.store.exists()  # nothing opened, nothing recorded


def test_sql_formats(filled, tmp_path):
    q = "select source, count(*) as n from problems group by 1 order by 1"
    csv = filled("sql", q, "--format", "csv").output
    assert csv.splitlines() == [
        "source,n",
        "data/mixed.jsonl,4",
        "gsm8k/test.jsonl,1319",
        "math500/test.jsonl,500",
    ]
    rows = json.loads(filled("sql", q, "--format", "json").output)
    assert rows[1] == {"source": "gsm8k/test.jsonl", "n": 1319}
    out = tmp_path / "counts.parquet"
    filled("sql", q, "--format", "parquet", "--out", out)
    assert pl.read_parquet(out)["n"].to_list() == [4, 1319, 500]
    table = filled("sql", q).output
    assert "math500/test.jsonl" in table and "3 rows" in table


def test_sql_shows_an_interval_as_text(filled):
    """Polars cannot take DuckDB's INTERVAL; the column comes as text instead of a traceback."""
    q = "select interval 90 second as took, 1 as n, (finished_at - started_at) is null as x from runs limit 1"
    rows = json.loads(filled("sql", q, "--format", "json").output)
    assert rows[0]["took"] == "00:01:30" and rows[0]["n"] == 1


def test_sql_from_file_and_canned_name(filled, tmp_path):
    path = tmp_path / "q.sql"
    path.write_text(
        "-- how many\nselect count(*) as n from problems where source like 'math500%';\n"
    )
    assert filled("sql", path, "--format", "csv").output.splitlines() == ["n", "500"]
    by_reason = filled("sql", "quarantine_by_reason", "--format", "csv").output
    assert "ingest,data/mixed.jsonl,not UTF-8: invalid continuation byte at byte 16,1" in by_reason
    listing = filled("sql", "--list").output
    for name in canned_queries():
        assert name in listing


def test_every_canned_query_runs_on_a_fresh_store(filled):
    for name in canned_queries():
        res = filled("sql", name, "--format", "csv")
        assert res.exit_code == 0, name


def test_sql_is_read_only(filled):
    res = filled("sql", "delete from problems", ok=False)
    assert res.exit_code == 1
    assert "read-only" in res.output
    assert (
        filled("sql", "select count(*) n from problems", "--format", "csv").output.splitlines()[1]
        == "1823"
    )


def test_sql_errors_are_messages_not_tracebacks(filled):
    res = filled("sql", "select * from nowhere", ok=False)
    assert res.exit_code == 1 and "nowhere" in res.output and "Traceback" not in res.output
    res = filled("sql", "select 1", "--format", "parquet", ok=False)
    assert res.exit_code == 2 and "--out" in res.output


def test_sql_on_a_missing_store(pitfall):
    res = pitfall("sql", "select 1", ok=False)
    assert res.exit_code == 2 and "no store at" in res.output


def test_stats(filled):
    out = " ".join(filled("stats").output.split())
    assert "schema v9" in out
    assert re.search(r"\bproblems\W+1,823\b", out)
    assert re.search(r"gsm8k/test.jsonl\W+1319\b", out)
    assert "empty answer ('answer')" in out


def test_bad_config_exits_2_naming_the_key(pitfall, tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[store]\npth = 'x'\n")
    res = pitfall("--config", cfg, "stats", ok=False)
    assert res.exit_code == 2
    assert f"{cfg}: unknown key 'store.pth'" in res.output


@pytest.mark.slow
def test_second_writer_command_fails_fast_and_the_store_survives(pitfall, store_path):
    import subprocess
    import sys
    import textwrap

    pitfall("ingest", MATH500, "--preset", "math")
    holder = textwrap.dedent(f"""
        import time
        from pipeline.store import Store
        store = Store.writer({str(store_path)!r}, command="scheduled run")
        print("ready", flush=True)
        time.sleep(2)
        store.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        res = pitfall("ingest", GSM8K, "--preset", "gsm8k", ok=False)
        assert res.exit_code == 3
        assert f"being written by pid {proc.pid} (scheduled run" in res.output
    finally:
        assert proc.wait(timeout=30) == 0
    out = pitfall(
        "sql", "select source, count(*) n from problems group by 1", "--format", "csv"
    ).output
    assert out.splitlines() == ["source,n", "math500/test.jsonl,500"]
    pitfall("ingest", GSM8K, "--preset", "gsm8k")  # and it is writable again
