import ast
import re
from pathlib import Path

import polars as pl

from pipeline.keys import content_key
from pipeline.rows import SCHEMAS, problem_key, trace_key
from pipeline.store import Store
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


SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE FROM|CREATE|DROP|ALTER)\b")
STORE_WRITES = {"insert_new", "replace_rows", "replace_where", "execute", "stage"}


def test_flows_only_wire():
    """flows/ holds no SQL string and calls no store write or stage query: stages
    (pipeline/stages/) read and write, flows and the CLI only wire them."""
    for path in (REPO / "flows").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL_WORDS.search(node.value), f"{path}:{node.lineno}: {node.value!r}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in STORE_WRITES, f"{path}:{node.lineno}: .{node.attr}"


# DuckDB column types the Polars schemas may hold (JSON columns take text)
DUCK = {
    pl.String: {"VARCHAR", "JSON"},
    pl.Int32: {"INTEGER"},
    pl.Int64: {"BIGINT"},
    pl.Float64: {"DOUBLE"},
    pl.Boolean: {"BOOLEAN"},
}


def test_every_row_schema_matches_its_table(tmp_path):
    """pipeline/rows.py holds each table's schema; the store fills run_id and created_at."""
    with Store.writer(tmp_path / "s.duckdb", command="test") as store:
        columns = store.query(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE column_name NOT IN ('run_id', 'created_at')"
        )
    for table, schema in SCHEMAS.items():
        got = columns.filter(pl.col("table_name") == table)
        assert got["column_name"].to_list() == list(schema), table
        for name, dtype in zip(got["column_name"], got["data_type"], strict=True):
            assert dtype in DUCK[schema[name]], f"{table}.{name}: {dtype} vs {schema[name]}"
