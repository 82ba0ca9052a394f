"""`pitfall run`, `pitfall report` and `pitfall deploy`: the curate flow from the command line."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows import curate as curate_module
from flows.cli.common import (
    BAD_INPUT,
    LOCKED,
    _bars,
    _fail,
    _open_reader,
    _override,
    _progress_factory,
    _settings,
    err,
    out,
)
from flows.prefect_api import PrefectUnavailable, prefect_api
from pipeline.config import STAGES, Settings, redacted_settings, secret_env
from pipeline.procs import scoped_env
from pipeline.profile import BESIDE, PARTS
from pipeline.readers import SourceError
from pipeline.report import gather
from pipeline.sampling import ServerUnavailable
from pipeline.stages import preload_engine
from pipeline.store import StoreError, StoreLocked
from pipeline.totals import store_report


def _flow_overrides(settings: Settings) -> dict:
    """The resolved settings as the flow's JSON parameter (file, env and flags
    applied), credentials in URLs redacted: Prefect stores and shows parameters.
    The flow reads the real values from the environment, where `run` puts them."""
    return redacted_settings(settings, exclude={"config_file"})


def run(
    ctx: typer.Context,
    stage: Annotated[
        list[str] | None,
        typer.Option(help=f"Run only these stages (repeatable): {', '.join(STAGES)}."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(help="Verification and sampling shards on Ray: auto or an address."),
    ] = None,
    on_locked: Annotated[
        str | None,
        typer.Option(help="Another run holds the store: wait | exit (default: \\[run])."),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also print where each stage's time went: engine start, generate calls"
            " (how many, sequences per call, tokens/s), verification, store, the rest."
            " Every run keeps this in runs.summary.",
        ),
    ] = False,
) -> None:
    """Run the curate flow: ingest, sample/verify/allocate, segment, localize,
    negatives, reweight, export.

    With no config this is the embedded default: the toy problems, the toy
    teacher through vLLM, the default store. Every stage does only what is new,
    so a second run on unchanged input samples, verifies and rolls out nothing,
    and a killed run picks up where it stopped.
    """
    settings = _override(ctx, run={"stages": stage, "ray": ray, "on_locked": on_locked})
    with (
        _bars() as bars,
        _prefect(settings, meanwhile=lambda: preload_engine(settings)),
        _no_traceback_for(StoreError, SourceError),
    ):
        curate_module.progress_bars = _progress_factory(bars)
        try:
            # the real values of what the flow's parameters carry redacted
            with scoped_env(secret_env(settings)):
                summary = curate_module.curate(overrides=_flow_overrides(settings))
        except StoreLocked as exc:
            raise _fail(str(exc), LOCKED) from None
        except SourceError as exc:
            raise _fail(str(exc), BAD_INPUT) from None
        except ServerUnavailable as exc:
            raise _fail(escape(f"sampling stopped: {exc}")) from None
        finally:
            curate_module.progress_bars = None
    _print_stages(summary["stages"])
    if profile:
        _print_profile(summary["stages"])
    _print_report(summary["report"], summary["pairs"], summary["stages"])
    out.print(
        f"\nstore: {summary['store']}   export: {summary['export_dir']}\n"
        "next: [cyan]pitfall report[/cyan], [cyan]pitfall sql pass_rate_per_problem[/cyan], "
        '[cyan]pitfall sql "select * from first_errors limit 5"[/cyan]'
    )


@contextlib.contextmanager
def _no_traceback_for(*errors: type[BaseException]):
    """Prefect logs a flow's or task's exception with its traceback. The errors
    `run` reports itself in one line (a store it cannot read or write, bad
    input) are then logged by Prefect without one."""

    def drop_traceback(record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], errors):
            record.exc_info = record.exc_text = None
        return True

    loggers = [logging.getLogger(f"prefect.{name}") for name in ("flow_runs", "task_runs")]
    for logger in loggers:
        logger.addFilter(drop_traceback)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop_traceback)


def report(
    ctx: typer.Context,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the report with its charts to this self-contained HTML file"
            " (difficulty and DART status, first errors per method, localization cost,"
            " pairs, evaluations, runs).",
        ),
    ] = None,
) -> None:
    """What the store holds: problems, traces, pass rate, localized failures, pairs, SFT rows."""
    settings = _settings(ctx)
    with _open_reader(settings) as store:
        if html is None:
            _print_report(*store_report(store), [])
            return
        data = gather(store, settings.eval.level_column)
    _print_report(data.totals, data.pairs_by_kind, [])
    from pipeline.report_html import render  # matplotlib: only when asked for

    try:
        html.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        raise _fail(escape(f"cannot write {html}: {exc.strerror or exc}")) from None
    out.print(f"report: {escape(str(html))}", highlight=False)


def deploy(
    ctx: typer.Context,
    cron: Annotated[str, typer.Option(help='Schedule, e.g. "0 3 * * *" (03:00 daily).')],
    name: Annotated[str, typer.Option(help="Deployment name.")] = "pitfall-curate",
) -> None:
    """Serve the curate flow on a cron schedule (runs until stopped).

    Each scheduled run uses the settings resolved now (file, environment and
    flags). Runs never write the store at once: a run that finds it locked
    waits or exits as \\[run] on_locked says. With a Prefect server
    (PREFECT_API_URL) the runs show in its UI; `prefect.yaml` describes the
    same deployment for `prefect deploy`.
    """
    settings = _settings(ctx)
    deployment = curate_deployment(settings, cron, name)
    os.environ.update(secret_env(settings))  # served runs inherit them (see _flow_overrides)
    from prefect import serve

    with _prefect(settings):
        out.print(f"serving {name} on cron {cron!r} (Ctrl-C to stop)")
        serve(deployment)


@contextlib.contextmanager
def _prefect(settings: Settings, meanwhile: Callable[[], None] | None = None):
    """The Prefect API for this command: PREFECT_API_URL, else a local server for
    its lifetime; ``meanwhile`` runs while that server starts."""
    try:
        with prefect_api(
            settings.run.prefect_start_timeout_s,
            lambda m: err.print(m, style="dim", highlight=False),
            meanwhile,
        ):
            yield
    except PrefectUnavailable as exc:
        raise _fail(str(exc)) from None


def curate_deployment(settings: Settings, cron: str, name: str):
    from pydantic import ValidationError

    try:
        return curate_module.curate.to_deployment(
            name=name, cron=cron, parameters={"overrides": _flow_overrides(settings)}
        )
    except ValidationError:
        raise _fail(f"not a cron expression: {cron!r}", BAD_INPUT) from None


def _print_stages(stages: list[dict[str, Any]]) -> None:
    table = Table("stage", "seconds", "looked at", "written", "detail", title="run")
    for s in stages:
        table.add_row(
            s["stage"], f"{s['seconds']:.1f}", str(s["rows_in"]), str(s["rows_out"]), _brief(s)
        )
    out.print(table)


def _print_profile(stages: list[dict[str, Any]]) -> None:
    parts = [*PARTS, "other", BESIDE]
    columns = ("generate calls", "sequences per call", "tokens/s")
    table = Table("stage", "seconds", *parts, *columns, title="where the time went (seconds)")
    for s in stages:
        prof = s["detail"].get("profile")
        if not prof:
            continue
        calls = prof.get("generate calls")
        shape = f"{calls['min']} / {calls['median']:g} / {calls['max']}" if calls else ""
        table.add_row(
            s["stage"],
            f"{s['seconds']:.1f}",
            *(f"{prof['seconds'][p]:.1f}" for p in parts),
            f"{calls['calls']:,}" if calls else "",
            shape,
            f"{calls['tokens/s']:,}" if calls and calls["tokens/s"] else "",
        )
    table.caption = (
        "verify beside generation: on a thread while the engine works, not part of the"
        " wall time; a stream's poll counts as a call of the sequences in flight"
        " (min / median / max); tokens/s: inside the calls"
    )
    out.print(table)


def _brief(stage: dict[str, Any]) -> str:
    """A stage's tokens, rollouts, flat details and skips in one cell (the full
    result is in runs.summary)."""
    parts = [f"{k} {stage[k]:,}" for k in ("tokens", "rollouts") if stage[k]]
    for key, value in stage["detail"].items():
        if (
            isinstance(value, dict)
            and value
            and not any(isinstance(v, dict | list) for v in value.values())
        ):
            parts.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3g}")
        elif isinstance(value, int | str) and key != "dir":
            parts.append(f"{key} {value}")
    if stage["skipped"]:
        parts.append(f"skipped {sum(stage['skipped'].values()):,}")
    return "; ".join(parts)


def _print_report(row: dict, pairs: dict, stages: list[dict]) -> None:
    table = Table("", "", title="store", show_header=False)
    verified = row["verified"] or 0
    rate = f"{100 * row['correct'] / verified:.1f}%" if verified else "-"
    for label, value in (
        ("problems", row["problems"]),
        ("traces", row["traces"]),
        ("verified / pass rate", f"{verified} / {rate}"),
        ("localized failures", row["localized_failures"]),
        ("rollouts", row["rollouts"]),
        *((f"pairs: {k}", v) for k, v in pairs.items()),
        ("SFT rows selected", row["sft_selected"]),
        ("quarantined", row["quarantined"]),
    ):
        table.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    files = [f for s in stages if s["stage"] == "export" for f in s["detail"].get("files", [])]
    for f in files:
        table.add_row("exported", f)
    out.print(table)


COMMANDS = {
    "run": run,
    "report": report,
    "deploy": deploy,
}
