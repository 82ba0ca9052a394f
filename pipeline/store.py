"""The trace store: one DuckDB file, and the only place in pitfall that speaks SQL.

Concurrency model (DuckDB allows one read-write process *or* many read-only
ones per file):

* A writer holds ``<store>.lock`` (an ``flock``, released by the OS even on
  SIGKILL) for its whole life; a second writer fails fast with the holder's
  pid and command. The DuckDB file itself is opened only while a batch is
  being written, so readers (``pitfall sql``) get in between batches.
* Readers open the file read-only and, like the writer, retry for
  ``open_timeout_s`` while the other side holds it.

Rows go in through :meth:`Store.insert_new`: rows whose key already exists are
skipped and counted, never duplicated, and every row records the run that
wrote it.

Failures: the store's path is resolved (symlinks) before anything is derived
from it, so one file has one lock. A store written by a newer pitfall (a
higher schema version) is never written and reads with a :class:`StoreWarning`.
DuckDB failing to read or write the file (a full disk, a damaged file) comes out
as a :class:`StoreError` naming the store and the original cause. A run ends
``ok``, ``failed`` or ``interrupted`` (stopped by a signal); one that could not
close itself (SIGKILL) is marked ``interrupted`` by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import __version__
from pipeline.config import StoreSettings
from pipeline.sqlfiles import (
    Migration,
    canned_queries,
    eval_macros_sql,
    macros_sql,
    migrations,
    schema_sql,
    stage_sql,
)

TableLike = pa.Table | pl.DataFrame


class StoreError(RuntimeError):
    pass


class StoreLocked(StoreError):
    """Another process is writing the store."""


class StoreMissing(StoreError):
    pass


class QueryError(StoreError):
    """DuckDB refused a query (syntax, unknown table, a write on a read-only store, ...)."""


class StoreWarning(UserWarning):
    """The store can be read, though not entirely as this pitfall expects (a newer schema)."""


# What DuckDB raises when the store itself cannot be read or written: I/O (a
# full disk, a file it cannot read or does not recognise), a failed commit, a
# database invalidated by an earlier such error. These become a StoreError
# naming the store; other errors (a bad query, a constraint) are bugs and keep
# their traceback.
_S = StoreSettings()  # the defaults live in the settings, declared once
_STORE_FAILURES = (duckdb.OperationalError, duckdb.FatalException, duckdb.InternalException)


@dataclass(frozen=True)
class InsertResult:
    table: str
    inserted: int
    skipped: int

    def __add__(self, other: InsertResult) -> InsertResult:
        return InsertResult(
            self.table, self.inserted + other.inserted, self.skipped + other.skipped
        )


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    # not just "lock": a store under /home/blocky/ is no reason to wait
    return isinstance(exc, duckdb.IOException) and "conflicting lock" in str(exc).lower()


def _known_version(pending: list[Migration]) -> int:
    """The schema version this code writes: its newest migration (the baseline is 1)."""
    return max((m.version for m in pending), default=1)


class _WriteLock:
    """An exclusive ``flock`` on ``<store>.lock`` holding a note about its owner."""

    def __init__(self, db_path: Path, command: str, wait_s: float = 0.0):
        self.path = db_path.with_name(db_path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only folder or medium
            raise StoreError(
                f"cannot write store {db_path}: its lock file {self.path}: {exc.strerror}"
            ) from exc
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                holder = self._read_holder()
                os.close(self._fd)
                waited = f" (waited {wait_s:g} s)" if wait_s else ""
                raise StoreLocked(
                    f"store {db_path} is being written by pid {holder.get('pid', '?')} "
                    f"({holder.get('command', '?')} on {holder.get('host', '?')}, "
                    f"since {holder.get('since', '?')}){waited}; wait for it to finish or stop it"
                ) from None
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # the note only names the holder: a full disk is reported by the write that needs space
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(note).encode(), 0)

    def _read_holder(self) -> dict:
        try:
            return json.loads(os.pread(self._fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class Store:
    """Use :meth:`writer` or :meth:`reader`; both are context managers."""

    def __init__(self, path: Path, *, read_only: bool, open_timeout_s: float, batch_rows: int):
        # Resolved: the lock and DuckDB's .wal sit beside the real file, whatever
        # symlink a command was given (a lock beside a link let two writers in).
        self.path = Path(path).resolve()
        self.read_only = read_only
        self.open_timeout_s = open_timeout_s
        self.batch_rows = batch_rows
        self.run_id: str | None = None
        self._lock: _WriteLock | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._depth = 0
        self._opened_at = 0.0
        self.busy_s = 0.0  # wall time inside the store (connect, SQL, checkpoint), for profiles
        self._keys: dict[str, str] = {}
        self._columns: dict[str, set[str]] = {}

    # ---------------------------------------------------------------- opening

    @classmethod
    def writer(
        cls,
        path: Path | str,
        *,
        command: str,
        config: dict | None = None,
        open_timeout_s: float = _S.open_timeout_s,
        batch_rows: int = _S.batch_rows,
        extra_migrations: list[Migration] | None = None,
        lock_wait_s: float = 0.0,
    ) -> Store:
        """Take the write lock (waiting up to ``lock_wait_s`` for another writer to
        finish), create or upgrade the schema and open a run.

        A store of a newer schema than this code's is refused before anything
        writes to it; runs left ``running`` by a killed writer are marked
        ``interrupted``."""
        store = cls(
            Path(path), read_only=False, open_timeout_s=open_timeout_s, batch_rows=batch_rows
        )
        store._lock = _WriteLock(store.path, command, lock_wait_s)
        pending = migrations() + list(extra_migrations or [])
        try:
            # read-only first: the refusal must not leave a checkpoint behind
            stored = store._stored_version() if store.path.exists() else 0
            if stored > _known_version(pending):
                raise StoreError(
                    f"store {store.path} has schema version {stored}; this pitfall "
                    f"({__version__}) knows up to {_known_version(pending)}: upgrade pitfall"
                )
            with store.connection() as con:
                _migrate(con, pending)
                store.run_id = uuid.uuid4().hex
                with _transaction(con):
                    _mark_interrupted(con, store.run_id)
                    con.execute(
                        "INSERT INTO runs (run_id, command, argv, config, pid, host, version) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            store.run_id,
                            command,
                            json.dumps(sys.argv),
                            json.dumps(config, default=str) if config is not None else None,
                            os.getpid(),
                            socket.gethostname(),
                            __version__,
                        ],
                    )
        except BaseException:
            store._lock.release()
            raise
        return store

    @classmethod
    def reader(cls, path: Path | str, *, open_timeout_s: float = _S.open_timeout_s) -> Store:
        """Open the file once now, so that one DuckDB cannot read fails here rather
        than mid-command; a store of a newer schema warns (:class:`StoreWarning`)."""
        store = cls(Path(path), read_only=True, open_timeout_s=open_timeout_s, batch_rows=0)
        if not store.path.is_file():
            raise StoreMissing(f"no store at {path} (create one with `pitfall ingest`)")
        stored, known = store._stored_version(), _known_version(migrations())
        if stored > known:
            warnings.warn(
                f"store {store.path} has schema version {stored}; this pitfall ({__version__}) "
                f"knows up to {known}: what it reads may be incomplete; upgrade pitfall",
                StoreWarning,
                stacklevel=2,
            )
        return store

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The DuckDB connection, opened for the outermost ``with`` and closed after it.

        DuckDB failing to read or write the file is raised as a StoreError."""
        if self._con is None:
            self._opened_at = time.perf_counter()
            self._con = self._connect(self.read_only)
        self._depth += 1
        try:
            yield self._con
        except _STORE_FAILURES as exc:
            self._leave(failing=True)
            raise StoreError(f"store {self.path}: {exc}") from exc
        except BaseException:
            self._leave(failing=True)
            raise
        self._leave(failing=False)

    def _leave(self, failing: bool) -> None:
        self._depth -= 1
        if self._depth == 0:
            con, self._con = self._con, None
            try:
                con.close()  # a writer's close checkpoints: a write, which can fail
            except duckdb.Error as exc:
                if not failing:  # else the error on its way out is the one to report
                    raise StoreError(f"store {self.path}: {exc}") from exc
            finally:
                self.busy_s += time.perf_counter() - self._opened_at

    def _stored_version(self) -> int:
        """The schema version the file records (0: none yet), through a read-only connection."""
        con = self._connect(read_only=True)
        try:
            if not con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version'"
            ).fetchone()[0]:
                return 0
            return con.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        except _STORE_FAILURES as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc
        finally:
            con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.open_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc) or time.monotonic() >= deadline:
                    raise StoreError(f"cannot open {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        if not read_only:
            # Completions are long natural-language text: zstd stores them in
            # about a fifth of their JSONL size where FSST manages a third.
            con.execute("PRAGMA force_compression='zstd'")
        return con

    def close(self, status: str = "ok", summary: dict | None = None) -> None:
        if self._lock is None:
            return
        try:
            if self.run_id is not None:
                with self.connection() as con:
                    con.execute(
                        "UPDATE runs SET status = ?, finished_at = current_timestamp, summary = ? "
                        "WHERE run_id = ?",
                        [
                            status,
                            json.dumps(summary, default=str) if summary else None,
                            self.run_id,
                        ],
                    )
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.read_only:
            return
        if exc_type is None:
            self.close("ok")
            return
        # Outside Exception are the ways a process is stopped from outside:
        # KeyboardInterrupt (SIGINT, and SIGTERM in the CLI), SystemExit,
        # Prefect's TerminationSignal. The work did not fail; it was interrupted.
        status = "failed" if issubclass(exc_type, Exception) else "interrupted"
        # The store may be what failed (a full disk): the error on its way out is
        # the one to report. A run left 'running' is marked by the next writer.
        with contextlib.suppress(Exception):
            self.close(status)

    # ------------------------------------------------------------------ writes

    def insert_new(self, table: str, rows: TableLike) -> InsertResult:
        """Insert the rows whose key is not in ``table`` yet, a batch per transaction.

        Columns are matched by name; missing ones take their defaults and
        ``run_id`` is filled in with this run's id.
        """
        if self.read_only:
            raise StoreError("insert_new on a read-only store")
        data = self._with_run_id(table, rows)
        key = self._primary_key(table)
        total = InsertResult(table, 0, 0)
        # One open for all batches (a close checkpoints, which costs ~1 s per
        # 100k traces); one transaction per batch, so a crash loses one batch.
        with self.connection() as con:
            for offset in range(0, data.num_rows, self.batch_rows):
                batch = data.slice(offset, self.batch_rows)
                with _staged(con, _first_per_key(batch, key)):
                    # an anti-join is ~1.5x faster here than INSERT OR IGNORE
                    inserted = con.execute(
                        f"INSERT INTO {table} BY NAME "
                        f"SELECT * FROM _incoming ANTI JOIN {table} USING ({key})"
                    ).fetchone()[0]
                total += InsertResult(table, inserted, batch.num_rows - inserted)
        return total

    def replace_rows(self, table: str, rows: TableLike) -> int:
        """Insert or overwrite rows by key, for derived tables that are recomputed
        (``difficulty``); returns the number of rows written."""
        if self.read_only:
            raise StoreError("replace_rows on a read-only store")
        data = self._with_run_id(table, rows)
        if data.num_rows == 0:
            return 0
        with self.connection() as con, _staged(con, data):
            con.execute(f"INSERT OR REPLACE INTO {table} BY NAME SELECT * FROM _incoming")
        return data.num_rows

    def replace_where(self, table: str, column: str, value: str, rows: TableLike) -> int:
        """Swap every row whose ``column`` equals ``value`` for ``rows``, in one
        transaction (a recomputed slice such as one reweighting recipe)."""
        if self.read_only:
            raise StoreError("replace_where on a read-only store")
        if column not in self._table_columns(table):
            raise StoreError(f"{table} has no column {column!r}")
        data = self._with_run_id(table, rows)
        with self.connection() as con, _staged(con, data):
            con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
            if data.num_rows:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
        return data.num_rows

    def execute(self, sql: str, params: list | None = None) -> None:
        """A statement that changes the store (UPDATE of derived tables and the like)."""
        if self.read_only:
            raise StoreError("execute on a read-only store")
        with self.connection() as con:
            con.execute(sql, params or [])

    # ------------------------------------------------------------------- reads

    def query(self, sql: str, params: list | dict | None = None) -> pl.DataFrame:
        with self.connection() as con:
            try:
                rel = con.sql(sql, params=params) if params else con.sql(sql)
                return pl.DataFrame() if rel is None else _intervals_as_text(rel).pl()
            except _STORE_FAILURES:
                raise  # the file, not the query: a StoreError naming the store
            except duckdb.Error as exc:
                raise QueryError(str(exc) + self._older_schema_hint(exc)) from exc

    def _older_schema_hint(self, exc: duckdb.Error) -> str:
        """A reader does not migrate: on a store older than this pitfall, a query may
        name a table or macro the store does not have yet."""
        if not (self.read_only and isinstance(exc, duckdb.CatalogException)):
            return ""
        stored, known = self._stored_version(), _known_version(migrations())
        if stored >= known:
            return ""
        return (
            f" (the store has schema version {stored}, this pitfall {known}: any command"
            " that writes it, e.g. `pitfall verify`, brings it up to date)"
        )

    def canned(self, name: str) -> pl.DataFrame:
        """Run ``sql/queries/<name>.sql``."""
        queries = canned_queries()
        if name not in queries:
            raise KeyError(f"no canned query {name!r}; have: {', '.join(queries)}")
        return self.query(queries[name].read_text(encoding="utf-8"))

    def stage(self, name: str, params: dict | None = None) -> pl.DataFrame:
        """Run ``sql/stages/<name>.sql`` with named ``$params``."""
        return self.query(stage_sql(name), params)

    def table_counts(self) -> dict[str, int]:
        with self.connection() as con:
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                    "ORDER BY table_name"
                ).fetchall()
            ]
            return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}

    def schema_version(self) -> int:
        return int(self.query("SELECT max(version) AS v FROM schema_version")["v"][0])

    # ----------------------------------------------------------------- helpers

    def _with_run_id(self, table: str, rows: TableLike) -> pa.Table:
        data = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
        if "run_id" in self._table_columns(table) and "run_id" not in data.column_names:
            data = data.append_column(
                "run_id", pa.array([self.run_id] * data.num_rows, pa.string())
            )
        return data

    def _primary_key(self, table: str) -> str:
        if table not in self._keys:
            with self.connection() as con:
                row = con.execute(
                    "SELECT constraint_column_names FROM duckdb_constraints() "
                    "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
                    [table],
                ).fetchone()
            if row is None or len(row[0]) != 1:
                raise StoreError(f"table {table!r} has no single-column primary key")
            self._keys[table] = row[0][0]
        return self._keys[table]

    def _table_columns(self, table: str) -> set[str]:
        if table not in self._columns:
            with self.connection() as con:
                self._columns[table] = {
                    r[0]
                    for r in con.execute(
                        "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
                    ).fetchall()
                }
        return self._columns[table]


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction, rolled back on any error; that error is the one raised."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        # A COMMIT that failed (no space left for the WAL) has ended the
        # transaction already; ROLLBACK's "no transaction is active" would hide why.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _staged(con: duckdb.DuckDBPyConnection, data: pa.Table) -> Iterator[None]:
    """``data`` visible as ``_incoming`` inside one transaction, rolled back on any error."""
    con.register("_incoming", data)
    try:
        with _transaction(con):
            yield
    finally:
        # a connection DuckDB invalidated after a failed write refuses this too
        with contextlib.suppress(duckdb.Error):
            con.unregister("_incoming")


def _mark_interrupted(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Mark the runs a killed writer left ``running`` (SIGKILL, a crash, a power cut).

    Called with the write lock held, which proves that no other writer of this
    store is alive. Their finished_at stays NULL: when they died is not known.
    """
    found = datetime.now(UTC).isoformat(timespec="seconds")
    note = (
        f"found running at {found} by run {run_id}, with no live writer: "
        "its process ended without closing it"
    )
    con.execute(
        "UPDATE runs SET status = 'interrupted', summary = ? WHERE status = 'running'",
        [json.dumps({"interrupted": note})],
    )


def _intervals_as_text(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """Polars cannot take DuckDB's INTERVAL (e.g. ``finished_at - started_at``):
    such columns come as text, ``00:04:35.1``, instead of ending the query."""
    if not any(str(t) == "INTERVAL" for t in rel.types):
        return rel
    cols = []
    for name, kind in zip(rel.columns, rel.types, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        cols.append(f"CAST({quoted} AS VARCHAR) AS {quoted}" if str(kind) == "INTERVAL" else quoted)
    return rel.project(", ".join(cols))


def _first_per_key(batch: pa.Table, key: str) -> pa.Table:
    """Drop repeated keys inside one batch (first wins); cheap when there are none."""
    if pc.count_distinct(batch.column(key)).as_py() == batch.num_rows:
        return batch
    return pl.from_arrow(batch).unique(subset=key, keep="first", maintain_order=True).to_arrow()


def _migrate(con: duckdb.DuckDBPyConnection, pending: list[Migration]) -> None:
    """Create the baseline schema on a new file, then apply newer migrations in order."""
    has_versions = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not has_versions:
        with _transaction(con):
            con.execute(schema_sql())
            con.execute("INSERT INTO schema_version (version, name) VALUES (1, 'schema')")
    current = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    for m in sorted(pending, key=lambda m: m.version):
        if m.version <= current:
            continue
        with _transaction(con):
            con.execute(m.sql)
            con.execute(
                "INSERT INTO schema_version (version, name) VALUES (?, ?)", [m.version, m.name]
            )
    con.execute(macros_sql())
    has_evals = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'eval_samples'"
    ).fetchone()[0]
    if has_evals:  # an older pitfall's migrations stop before them
        con.execute(eval_macros_sql())
