"""Looking into the store: `pitfall sql` and `pitfall stats`."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from flows.cli.common import (
    BAD_INPUT,
    _fail,
    _open_reader,
    _rich_table,
    _settings,
    err,
    out,
)
from pipeline.sqlfiles import canned_queries
from pipeline.store import StoreError

# ---------------------------------------------------------------------- sql


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(
            help="SQL text, a .sql file, or the name of a canned query (see --list).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[OutFormat, typer.Option("--format", help="Output format.")] = OutFormat.table,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown by --format table (0: all).")] = 50,
    list_queries: Annotated[
        bool, typer.Option("--list", help="List the canned queries and exit.")
    ] = False,
) -> None:
    """Run a read-only query against the store.

    The store opens read-only, so nothing here can change it; a run that is
    writing at the same time is waited for between its batches.
    """
    canned = canned_queries()
    if list_queries:
        table = Table(
            "name", "what it answers", title="canned queries (sql/queries/)", title_justify="left"
        )
        for name, path in canned.items():
            table.add_row(name, _first_comment(path))
        out.print(table)
        return
    if not query:
        raise _fail(
            "give a query, a .sql file or a canned query name (pitfall sql --list)", BAD_INPUT
        )
    if query in canned:
        text = canned[query].read_text(encoding="utf-8")
    elif query.endswith(".sql") and Path(query).is_file():
        text = Path(query).read_text(encoding="utf-8")
    else:
        text = query
    if fmt is OutFormat.parquet and out_file is None:
        raise _fail("--format parquet needs --out FILE", BAD_INPUT)

    settings = _settings(ctx)
    try:
        with _open_reader(settings) as store:
            df = store.query(text)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    _write_frame(df, fmt, out_file, limit)


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return ""


def _write_frame(df: pl.DataFrame, fmt: OutFormat, out_file: Path | None, limit: int) -> None:
    if fmt is OutFormat.parquet:
        assert out_file is not None
        df.write_parquet(out_file)
    elif fmt is OutFormat.csv:
        text = _flat(df).write_csv()
    elif fmt is OutFormat.json:
        text = df.write_json()
    if fmt in (OutFormat.csv, OutFormat.json):
        if out_file:
            out_file.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif fmt is OutFormat.table:
        if out_file:
            out_file.write_text(str(df), encoding="utf-8")
        else:
            out.print(_rich_table(df, limit))
    if out_file:
        err.print(f"wrote {df.height} rows to {out_file}", highlight=False)


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: lists and structs become JSON text."""
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    return df.with_columns(
        pl.Series(c, [json.dumps(v, default=str) for v in df[c].to_list()], pl.String)
        for c in nested
    )


# -------------------------------------------------------------------- stats


def stats(ctx: typer.Context) -> None:
    """Rows per table, problems by source and quarantine by reason."""
    settings = _settings(ctx)
    with _open_reader(settings) as store:
        counts = store.table_counts()
        by_source = store.canned("problems_by_source")
        reasons = store.canned("quarantine_by_reason")
        version = store.schema_version()
    table = Table(
        "table", "rows", title=f"{settings.store.path} (schema v{version})", title_justify="left"
    )
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    out.print(table)
    out.print(_rich_table(by_source, 0))
    if reasons.height:
        out.print(_rich_table(reasons, 0))


COMMANDS = {
    "sql": sql,
    "stats": stats,
}
