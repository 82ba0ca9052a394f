"""`pitfall sample` (DART rounds of sample -> verify -> allocate) and `pitfall verify`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import (
    _bars,
    _context,
    _fail,
    _open_writer,
    _override,
    _rich_table,
    out,
)
from pipeline.sampling import ServerUnavailable
from pipeline.stages import sample as sample_stage
from pipeline.stages import verify as verify_stage
from pipeline.verify import STATUSES, VERIFIER


def _print_verdicts(counts) -> None:
    table = Table("status", "traces", title=f"verdicts ({VERIFIER})", title_justify="left")
    for status in STATUSES:
        table.add_row(status, str(counts.get(status, 0)))
    out.print(table)


Again = StrEnum("Again", {name: name for name in ("timeout", "error")})


def verify(
    ctx: typer.Context,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: \\[verify] workers).")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="CPU seconds per item before its worker is killed (then one retry)."),
    ] = None,
    again: Annotated[
        list[Again] | None,
        typer.Option(
            help="Instead, verify anew the traces whose verdict has this status, and replace it"
            " (repeatable): e.g. timeouts from a pitfall older than the CPU-time budget."
        ),
    ] = None,
) -> None:
    """Verify every trace that has no verdict yet.

    The final answer is the last \\boxed{} (balanced braces), else an "answer
    is" phrase, else the last number; math-verify checks it against the gold
    answer in worker processes. An item that uses more than the timeout in CPU
    seconds has its worker killed and is retried once on a fresh one before it
    is a timeout, so a busy machine gives the same verdicts as an idle one.
    Statuses: correct, wrong, no_answer, truncated, timeout, error.
    """
    settings = _override(ctx, verify={"workers": workers, "timeout_s": timeout})
    again_statuses = tuple(a.value for a in again or ())
    with _open_writer(settings, "verify") as store, _bars() as bars:
        with _context(settings, store, bars, again=again_statuses) as stages:
            result = verify_stage.run(stages)
        store.close("ok", result.as_dict())
    _print_verdicts(result.detail["verdicts"])


def sample(
    ctx: typer.Context,
    backend: Annotated[
        str | None,
        typer.Option(help="vllm | openai | transformers (default: \\[teacher] backend)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model path or name (default: \\[teacher] model).")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Copies of the model, each on its own cores or GPU (default: \\[teacher] replicas).",
        ),
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="DART strategy: fixed | uniform | prop2diff.")
    ] = None,
    k_u: Annotated[
        int | None, typer.Option(help="uniform: correct answers wanted per problem.")
    ] = None,
    k_p: Annotated[
        int | None, typer.Option(help="prop2diff: correct answers for the hardest problem.")
    ] = None,
    n_fixed: Annotated[int | None, typer.Option(help="fixed: trials per problem.")] = None,
    n_max: Annotated[int | None, typer.Option(help="Trial cap per problem.")] = None,
    round_size: Annotated[int | None, typer.Option(help="Samples per problem per round.")] = None,
    max_rounds: Annotated[int | None, typer.Option(help="Rounds per problem at most.")] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only problems from this source (repeatable).")
    ] = None,
) -> None:
    """Sample the teacher in rounds (sample -> verify -> allocate) until DART's targets;
    each problem's next round starts as soon as its last is verified.

    Counters come from the store, so a killed run picks up where it stopped
    and never samples twice what it has. The difficulty table holds pass rate,
    fail rate, target and status (sampling / done / capped / unsolved).
    """
    settings = _override(
        ctx,
        teacher={"backend": backend, "model": model, "replicas": replicas},
        dart={
            "strategy": strategy,
            "k_u": k_u,
            "k_p": k_p,
            "n_fixed": n_fixed,
            "n_max": n_max,
            "round_size": round_size,
            "max_rounds": max_rounds,
        },
    )
    with _open_writer(settings, "sample") as store, _bars() as bars:
        try:
            with _context(settings, store, bars, sources=tuple(source or ())) as stages:
                result = sample_stage.run(stages)
        except ServerUnavailable as exc:
            store.close("failed", {"error": str(exc)})
            stored = "finished requests are stored, the next run asks for the rest"
            raise _fail(escape(f"sampling stopped: {exc}; {stored}")) from None
        store.close("ok", result.as_dict())
    _print_sampling(result)


def _print_sampling(result) -> None:
    d = result.detail
    out.print(
        f"rounds {d['rounds']}, requests {result.rows_in}, new traces {result.rows_out}, "
        f"completion tokens {result.tokens:,}"
    )
    failed = d["failed requests"]
    if failed:
        out.print(
            f"[yellow]failed requests {sum(failed.values())}[/yellow]: no traces written"
            " (table failed_requests); the next run asks for them again",
            highlight=False,
        )
        for reason, count in failed.items():
            out.print(f"  {count} × {reason}", highlight=False, markup=False)
    _print_verdicts(d["verdicts"])
    if d.get("difficulty"):
        out.print(_rich_table(pl.DataFrame(d["difficulty"]), 0))


COMMANDS = {
    "sample": sample,
    "verify": verify,
}
