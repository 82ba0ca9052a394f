"""Where the SQL lives: ``sql/`` in a checkout, ``pipeline/sql`` in a wheel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_MIGRATION_NAME = re.compile(r"^(\d{3})_([\w-]+)\.sql$")
_INCLUDE = re.compile(r"^-- @include ([\w.-]+\.sql)$", re.M)


@cache
def sql_dir() -> Path:
    for candidate in (_HERE / "sql", _HERE.parent / "sql"):
        if (candidate / "schema.sql").is_file():
            return candidate
    raise FileNotFoundError(f"schema.sql not found next to {_HERE}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def schema_sql() -> str:
    return (sql_dir() / "schema.sql").read_text(encoding="utf-8")


def macros_sql() -> str:
    """``sql/macros.sql``: the macros, created or replaced on every writer open."""
    return (sql_dir() / "macros.sql").read_text(encoding="utf-8")


def eval_macros_sql() -> str:
    """``sql/eval_macros.sql``: the macros over the eval tables, likewise where they exist."""
    return (sql_dir() / "eval_macros.sql").read_text(encoding="utf-8")


def _expand(text: str) -> str:
    """A ``-- @include NAME.sql`` line becomes that file of ``sql/``."""
    return _INCLUDE.sub(lambda m: (sql_dir() / m[1]).read_text(encoding="utf-8"), text)


def migrations() -> list[Migration]:
    """``sql/migrations/NNN_name.sql`` in version order (the baseline schema is version 1)."""
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must look like 002_name.sql: {path}")
        found.append(Migration(int(m[1]), m[2], _expand(path.read_text(encoding="utf-8"))))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or any(v < 2 for v in versions):
        raise ValueError(f"migration versions must be unique and >= 2: {versions}")
    return found


def canned_queries() -> dict[str, Path]:
    """Named queries in ``sql/queries/``, callable as ``pitfall sql NAME``."""
    return {p.stem: p for p in sorted((sql_dir() / "queries").glob("*.sql"))}


def stage_sql(name: str) -> str:
    """A query a stage runs (``sql/stages/<name>.sql``)."""
    path = sql_dir() / "stages" / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no stage query {name!r} in {path.parent}")
    return path.read_text(encoding="utf-8")
