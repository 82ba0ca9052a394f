import ast
from pathlib import Path

from pipeline.keys import content_key, problem_key, trace_key
from tests.conftest import REPO


def test_keys_are_stable_across_releases():
    # Pinned: a change here would orphan every stored row. Do not update casually.
    assert problem_key("What is 2 + 3?", "5") == "1a07184511d55f05fc9ba47767fee838"


def test_keys_hash_content_not_layout():
    a = trace_key("p", "m", {"temperature": 1.0, "top_p": 0.9}, 3)
    b = trace_key("p", "m", {"top_p": 0.9, "temperature": 1.0}, 3)
    assert a == b
    assert a != trace_key("p", "m", {"temperature": 1.0, "top_p": 0.9}, 4)
    # parts are length-prefixed: shifting a boundary changes the key
    assert content_key("k", "ab", "c") != content_key("k", "a", "bc")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_arrows_point_one_way():
    """pipeline imports nothing from flows/ or trainers/; trainers never open the store."""
    for path in (REPO / "pipeline").rglob("*.py"):
        assert not _imports(path) & {"flows", "trainers"}, path
    for path in (REPO / "trainers").rglob("*.py"):
        assert "duckdb" not in _imports(path), path
        assert "pipeline.store" not in path.read_text(encoding="utf-8"), path


def test_sql_stays_in_the_store():
    """Only the store (and the schema/migration files) talk to DuckDB."""
    allowed = {REPO / "pipeline" / "store.py"}
    for folder in ("pipeline", "flows", "trainers"):
        for path in (REPO / folder).rglob("*.py"):
            if path not in allowed:
                assert "duckdb" not in _imports(path), path
