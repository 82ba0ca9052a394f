"""What every `pitfall` command shares: the app, consoles, exit codes, store openers, progress."""

from __future__ import annotations

import contextlib
import signal
import warnings
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from flows.cli.logs import log_path, route_to_file
from flows.cli.stopping import stops_delivered
from pipeline.config import ConfigError, Settings, load_settings, redacted_settings
from pipeline.stages import Scope, StageContext
from pipeline.store import Store, StoreError, StoreLocked, StoreMissing, StoreWarning


class _Commands(TyperGroup):
    """Around every command: a store that cannot be opened, read or written is
    one `error:` line (exit 1), never a traceback; SIGTERM unwinds like Ctrl-C,
    so context managers mark the run interrupted, stop worker processes and
    free the lock, and the exit code is 128 + the signal's number."""

    def invoke(self, ctx):
        try:
            with stops_delivered():
                return super().invoke(ctx)
        except StoreLocked as exc:
            raise _fail(escape(str(exc)), LOCKED) from None
        except StoreError as exc:
            raise _fail(escape(str(exc))) from None
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise _fail(f"stopped by {signal.Signals(signum).name}", 128 + signum) from None


app = typer.Typer(
    cls=_Commands,
    name="pitfall",
    help="Curate post-training data from a teacher's successes [bold]and[/bold] its mistakes.\n\n"
    "Stages write to one DuckDB trace store; query it with [cyan]pitfall sql[/cyan].",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line, greppable

# exit codes
BAD_INPUT = 2
LOCKED = 3


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(code)


@app.callback()
def main(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="PITFALL_STORE",
            help="Trace store file (DuckDB). Default: store.path in the config, data/store/pitfall.duckdb.",
            show_default=False,
            readable=False,  # one that is not readable is the store's error line, not a usage box
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="PITFALL_CONFIG",
            help="Settings file (TOML). Default: ./pitfall.toml when it exists. "
            "PITFALL_SECTION__KEY variables override it; flags override both.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            envvar="PITFALL_VERBOSE",
            help="Show vLLM's, Prefect's, transformers' and torch's own messages and warnings"
            " here. Default: they go to logs/pitfall.log beside the store.",
        ),
    ] = False,
) -> None:
    overrides: dict[str, Any] = {"store": {"path": store}} if store else {}
    try:
        ctx.obj = load_settings(config, overrides)
    except ConfigError as exc:
        raise _fail(str(exc), BAD_INPUT) from None
    if not verbose:
        # an unwritable folder: the store's own error line says so, and the noise stays
        with contextlib.suppress(OSError):
            route_to_file(log_path(ctx.obj.store.path), bars=ctx.invoked_subcommand == "train")


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _override(ctx: typer.Context, **sections: dict[str, Any]) -> Settings:
    """The command's settings with its flags applied (``section={"key": value}``;
    None: not given), validated: a bad value is one line naming what is allowed, exit 2."""
    settings: Settings = ctx.obj
    update = {}
    for name, flags in sections.items():
        current = getattr(settings, name)
        given = {k: v for k, v in flags.items() if v is not None}
        if not given:
            continue
        try:
            update[name] = type(current).model_validate({**current.model_dump(), **given})
        except ValidationError as exc:
            e = exc.errors()[0]
            where = f"[{name}] {'.'.join(map(str, e['loc']))}"
            why = e["msg"].removeprefix("Value error, ")
            raise _fail(escape(f"{where}: {why} (got {e.get('input')!r})"), BAD_INPUT) from None
    return settings.model_copy(update=update)


def _open_writer(settings: Settings, command: str) -> Store:
    try:
        return Store.writer(
            settings.store.path,
            command=command,
            config=redacted_settings(settings),
            open_timeout_s=settings.store.open_timeout_s,
            batch_rows=settings.store.batch_rows,
        )
    except StoreLocked as exc:
        raise _fail(escape(str(exc)), LOCKED) from None
    except StoreError as exc:
        raise _fail(escape(str(exc))) from None


def _open_reader(settings: Settings) -> Store:
    """A reader; a store from a newer pitfall is read after one `warning:` line."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StoreWarning)
            store = Store.reader(settings.store.path, open_timeout_s=settings.store.open_timeout_s)
    except StoreMissing as exc:
        raise _fail(str(exc), BAD_INPUT) from None
    for w in caught:
        if issubclass(w.category, StoreWarning):
            err.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", highlight=False)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return store


def _context(
    settings: Settings, store: Store, bars: Progress | None = None, **scope
) -> StageContext:
    """A stage context for one command: its settings, its store, its bars and scope."""
    return StageContext(
        store, settings, _progress_factory(bars) if bars is not None else None, Scope(**scope)
    )


def _progress_factory(progress: Progress):
    def start(label: str, total: int | None):
        task = progress.add_task(label, total=total)
        return lambda n: progress.advance(task, n)

    return start


def _bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )


def _rich_table(df: pl.DataFrame, limit: int) -> Table:
    shown = df if limit <= 0 else df.head(limit)
    table = Table(
        *df.columns,
        caption=f"{df.height} rows"
        + (f", first {limit} shown" if shown.height < df.height else ""),
    )
    for row in shown.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any, width: int = 80) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"
