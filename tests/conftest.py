from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "data" / "benchmarks"
MATH500 = BENCHMARKS / "math500" / "test.jsonl"
GSM8K = BENCHMARKS / "gsm8k" / "test.jsonl"
TESTDATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No PITFALL_* setting from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PITFALL_"):
            monkeypatch.delenv(name)


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


@pytest.fixture
def pitfall(store_path: Path) -> Pitfall:
    return Pitfall(store_path)
