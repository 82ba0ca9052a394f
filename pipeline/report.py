"""What `pitfall report --html` shows, read from the store: one frame per chart.

Rendering is pipeline/report_html.py's; this module only gathers, so the same
figures can feed other views (the Prefect artifact uses the totals).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.evaluation import pass_at_k_table
from pipeline.store import Store
from pipeline.totals import store_report

MAX_K = 8


@dataclass
class ReportData:
    """Columns: problems (problem_id, source, level, n_trials, n_correct, pass_rate,
    fail_rate, target, status); first_errors (method, trace_id, first_error, n_steps,
    n_rollouts, rollout_tokens); pairs (kind, chosen_chars, rejected_chars); evals
    (pass_at_k_table's); runs (run_id, command, status, version, started_at,
    finished_at, seconds, summary)."""

    store: str
    totals: dict
    pairs_by_kind: dict[str, int]
    problems: pl.DataFrame
    first_errors: pl.DataFrame
    pairs: pl.DataFrame
    evals: pl.DataFrame
    runs: pl.DataFrame


def gather(store: Store, level_column: str) -> ReportData:
    totals, by_kind = store_report(store)
    sets = store.stage("eval_sets")["problem_set"].to_list()
    counts = store.stage("eval_counts", {"sets": sets}) if sets else pl.DataFrame()
    evals = pass_at_k_table(counts, eval_ks(counts)) if counts.height else pl.DataFrame()
    return ReportData(
        store=str(store.path),
        totals=totals,
        pairs_by_kind=by_kind,
        problems=store.stage("report_problems", {"level_path": f"$.{level_column}"}),
        first_errors=store.stage("report_first_errors"),
        pairs=store.stage("report_pairs"),
        evals=evals,
        runs=store.stage("report_runs"),
    )


def eval_ks(counts: pl.DataFrame) -> list[int]:
    """pass@1 and pass@k for the largest k (up to 8) every sampled problem has."""
    fewest = counts.filter(pl.col("n") > 0)["n"].min()
    k = min(MAX_K, int(fewest or 1))
    return [1, k] if k > 1 else [1]


def summary_markdown(stages: list[dict], totals: dict, pairs: dict[str, int]) -> str:
    """A run's summary as markdown: the Prefect artifact on the flow run's page."""
    lines = [
        "| stage | seconds | looked at | written |",
        "|---|---:|---:|---:|",
        *(
            f"| {s['stage']} | {s['seconds']:.1f} | {s['rows_in']:,} | {s['rows_out']:,} |"
            for s in stages
        ),
        "",
        "| store | rows |",
        "|---|---:|",
        *(f"| {k.replace('_', ' ')} | {v:,} |" for k, v in totals.items()),
        *(f"| pairs: {kind} | {n:,} |" for kind, n in pairs.items()),
    ]
    return "\n".join(lines)
