"""The curate flow's reference run: `pitfall run` twice on six toy problems, in a
subprocess with Prefect. Shared by the session: test_run checks the run itself,
test_trainers trains on the export it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store import Store
from tests.conftest import PREFECT_HOME, REPO

LEVELS = ("ops5-v99", "ops8-v199")
KEYED = {
    "problems": "problem_id",
    "traces": "trace_id",
    "verdicts": "verdict_id",
    "steps": "step_id",
    "rollouts": "rollout_id",
    "step_values": "value_id",
    "first_errors": "first_error_id",
    "difficulty": "problem_id",
    "pairs": "pair_id",
    "sft_selection": "selection_id",
}
# rows whose parent must exist (no orphans after a crash)
ORPHANS = {
    "traces": "SELECT count(*) FROM traces ANTI JOIN problems USING (problem_id)",
    "verdicts": "SELECT count(*) FROM verdicts ANTI JOIN traces USING (trace_id)",
    "steps": "SELECT count(*) FROM steps ANTI JOIN traces USING (trace_id)",
    "rollouts": "SELECT count(*) FROM rollouts ANTI JOIN traces USING (trace_id)",
    "first_errors": "SELECT count(*) FROM first_errors ANTI JOIN traces USING (trace_id)",
    "pairs": "SELECT count(*) FROM pairs p WHERE rejected_trace_id NOT IN "
    "(SELECT trace_id FROM traces)",
    "sft_selection": "SELECT count(*) FROM sft_selection ANTI JOIN traces USING (trace_id)",
}


def write_config(folder: Path, store: Path, **extra: str) -> Path:
    rows = [json.loads(x) for x in (REPO / "data/toy/test.jsonl").read_text().splitlines()]
    picked = [r for lv in LEVELS for r in [r for r in rows if r["level"] == lv][:3]]
    problems = folder / "problems.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in picked))
    config = folder / "pitfall.toml"
    config.write_text(
        f"""
[store]
path = "{store}"
[teacher]
backend = "transformers"
model = "{REPO / "data/models/toy-teacher"}"
max_tokens = 160
commit_every = 1
[verify]
commit_every = 2
[dart]
strategy = "fixed"
n_fixed = 6
round_size = 6
[localize]
k = 4
max_tokens = 100
per_problem = 2
{extra.get("localize", "")}
[negatives]
kinds = ["outcome", "step", "first-pit", "stepwise"]
[export]
dir = "{folder / "export"}"
[run]
inputs = ["{problems}"]
on_locked = "exit"
{extra.get("run", "")}
"""
    )
    return config


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--config", str(config), *args]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")}
    return e | {"PREFECT_HOME": PREFECT_HOME, "PYTHONPATH": str(REPO)}


def keys(store: Path) -> dict[str, set]:
    with Store.reader(store) as s:
        return {t: set(s.query(f"SELECT {k} FROM {t}")[k].to_list()) for t, k in KEYED.items()}


def last_run_summary(store: Path) -> dict:
    with Store.reader(store) as s:
        row = s.query(
            "SELECT summary FROM runs WHERE command = 'run' ORDER BY started_at DESC LIMIT 1"
        )
    return json.loads(row["summary"][0])


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """An uninterrupted run (printing its profile), then a second one on the same input."""
    folder = tmp_path_factory.mktemp("reference")
    store = folder / "store.duckdb"
    config = write_config(folder, store)
    first = subprocess.run(
        cli(config, "run", "--profile"), env=env(), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-3000:]
    first_summary = last_run_summary(store)
    first_keys = keys(store)
    second = subprocess.run(cli(config, "run"), env=env(), capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    return {
        "folder": folder,
        "store": store,
        "keys": first_keys,
        "first": first_summary,
        "second": last_run_summary(store),
        "output": first.stdout,
        "errors": first.stderr,
    }
