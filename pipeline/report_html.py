"""The store report as one self-contained HTML file: matplotlib charts inlined as SVG.

Nothing is fetched when the file is opened (no script, no font, no image from
elsewhere), so it can be mailed or attached to a run. Each chart is a
``<figure class="plot" id="plot-NAME">``; a section whose table is empty says
so in a sentence instead of drawing an empty chart.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable
from datetime import datetime

import polars as pl
from matplotlib import rcParams
from matplotlib.figure import Figure

from pipeline import __version__
from pipeline.report import ReportData

rcParams["svg.fonttype"] = "none"  # text stays text: a tenth of the size, and searchable
rcParams["svg.hashsalt"] = "pitfall"  # the same store renders the same file
rcParams["font.size"] = 9
STATUSES = ("done", "capped", "unsolved", "sampling", "not sampled")
COLORS = {"done": "#4c9a2a", "capped": "#e0a100", "unsolved": "#c0392b", "sampling": "#5b8def"}
COLORS["not sampled"] = "#aaaaaa"

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
figure.plot { margin: 1em 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
p.empty { color: #777; font-style: italic; }
"""


def render(data: ReportData) -> str:
    sections = [
        ("Summary", _summary(data)),
        ("Difficulty and DART", _plot("difficulty", _difficulty, data.problems, _DIFFICULTY)),
        (
            "Where the teacher goes wrong",
            _plot("first-errors", _first_errors, data.first_errors, _FE),
        ),
        (
            "What localization cost",
            _plot("localize-cost", _localize_cost, _probed(data.first_errors), _COST),
        ),
        ("Pairs", _plot("pairs", _pairs, data.pairs, _PAIRS)),
        ("Evaluations", _plot("evals", _evals, data.evals, _EVALS)),
        ("Runs", _plot("runs", _runs, data.runs, _RUNS) + _runs_table(data.runs)),
    ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{s}" for t, s in sections)
    title = f"pitfall report: {data.store}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>pitfall {html.escape(__version__)}, "
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}</p>\n{body}\n</body></html>\n"
    )


_DIFFICULTY = (
    "Left: pass rate per level over the problems sampled (mean and each problem). "
    "Right: problems per DART status: done (reached its target of correct answers), "
    "capped (n_max trials without reaching it), unsolved (no correct answer at the cap)."
)
_FE = (
    "First wrong step of each wrong trace, per localization method: its index (0-based) "
    "and its position relative to the trace's length (index / steps). Methods that are "
    "ground truth (exact, annotated) are drawn beside the estimates."
)
_COST = (
    "Rollouts and rollout tokens spent per localized wrong trace (a first error found, or "
    "undetermined), per method; box: quartiles, whiskers: 1.5 IQR, triangle: mean."
)
_PAIRS = "Pairs per kind, and the length in characters of their chosen and rejected sides."
_EVALS = "pass@k per model and problem set, with one standard error over problems."
_RUNS = "Seconds per stage of each curate run (pitfall run), oldest first."


def _plot(name: str, draw: Callable[[pl.DataFrame], Figure], frame: pl.DataFrame, caption: str):
    if frame.height == 0:
        return f"<p class='empty' id='plot-{name}'>Nothing to show: the store has no rows for this yet.</p>"
    fig = draw(frame)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # the XML prolog and doctype are not allowed inline
    return (
        f"<figure class='plot' id='plot-{name}'>{svg}"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _summary(data: ReportData) -> str:
    t = data.totals
    rate = f"{t['correct'] / t['verified']:.1%}" if t.get("verified") else "n/a"
    rows = [
        ("problems", f"{t['problems']:,}"),
        ("traces", f"{t['traces']:,} ({t['verified']:,} verified, {rate} correct)"),
        ("wrong traces with a first error", f"{t['localized_failures']:,}"),
        ("rollouts", f"{t['rollouts']:,}"),
        ("pairs", ", ".join(f"{k} {n:,}" for k, n in data.pairs_by_kind.items()) or "0"),
        ("SFT rows selected", f"{t['sft_selected']:,}"),
        ("quarantined input rows", f"{t['quarantined']:,}"),
        ("runs", f"{data.runs.height:,}"),
    ]
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table id='summary'>{cells}</table>"


def _difficulty(frame: pl.DataFrame) -> Figure:
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    sampled = frame.filter(pl.col("n_trials") > 0)
    levels = sorted(frame["level"].unique().to_list())
    for i, level in enumerate(levels):
        rates = sampled.filter(pl.col("level") == level)["pass_rate"].drop_nulls().to_list()
        if rates:
            left.scatter([i] * len(rates), rates, s=12, alpha=0.35, color="#5b8def")
            left.plot([i - 0.3, i + 0.3], [sum(rates) / len(rates)] * 2, color="#222", lw=2)
    left.set_xticks(range(len(levels)), levels, rotation=30, ha="right")
    left.set_ylim(-0.05, 1.05)
    left.set_ylabel("pass rate")
    counts = frame.with_columns(pl.col("status").fill_null("not sampled"))
    bottom = [0] * len(levels)
    for status in STATUSES:
        n = [
            counts.filter((pl.col("level") == lv) & (pl.col("status") == status)).height
            for lv in levels
        ]
        if any(n):
            right.bar(range(len(levels)), n, bottom=bottom, label=status, color=COLORS[status])
            bottom = [b + x for b, x in zip(bottom, n, strict=True)]
    targets = [sampled.filter(pl.col("level") == lv)["target"].drop_nulls().mean() for lv in levels]
    for i, target in enumerate(targets):
        if target is not None:
            right.annotate(
                f"target\n{target:.1f}", (i, bottom[i]), ha="center", va="bottom", fontsize=7
            )
    right.set_xticks(range(len(levels)), levels, rotation=30, ha="right")
    right.set_ylabel("problems")
    right.set_ylim(0, max(bottom) * 1.2 + 1)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def _first_errors(frame: pl.DataFrame) -> Figure:
    wrong = frame.filter(pl.col("first_error") >= 0)
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    methods = sorted(wrong["method"].unique().to_list())
    top = int(wrong["first_error"].max() or 0)
    width = 0.8 / max(len(methods), 1)
    for j, method in enumerate(methods):
        part = wrong.filter(pl.col("method") == method)
        counts = part["first_error"].value_counts()
        by_index = dict(counts.iter_rows())
        xs = list(range(top + 1))
        left.bar([x + j * width for x in xs], [by_index.get(x, 0) for x in xs], width, label=method)
        rel = part.filter(pl.col("n_steps") > 0).select(
            (pl.col("first_error") / pl.col("n_steps")).alias("r")
        )["r"]
        right.hist(rel.to_list(), bins=10, range=(0, 1), histtype="step", lw=1.5, label=method)
    left.set_xlabel("first wrong step (index)")
    left.set_ylabel("traces")
    right.set_xlabel("first wrong step / steps in the trace")
    for ax in (left, right):
        ax.legend(fontsize=8)
    return fig


def _probed(frame: pl.DataFrame) -> pl.DataFrame:
    """The traces a method had to search: -1 (no error) is what correct traces get."""
    return frame.filter(pl.col("first_error").is_null() | (pl.col("first_error") >= 0))


def _localize_cost(frame: pl.DataFrame) -> Figure:
    methods = sorted(frame["method"].unique().to_list())
    fig = Figure(figsize=(10, 3.2))
    left, right = fig.subplots(1, 2)
    for ax, column, label in (
        (left, "n_rollouts", "rollouts per trace"),
        (right, "rollout_tokens", "rollout tokens per trace"),
    ):
        values = [
            frame.filter(pl.col("method") == m)[column].fill_null(0).to_list() for m in methods
        ]
        ax.boxplot(values, tick_labels=methods, showfliers=False, showmeans=True)
        ax.set_ylabel(label)
    return fig


def _pairs(frame: pl.DataFrame) -> Figure:
    kinds = sorted(frame["kind"].unique().to_list())
    fig = Figure(figsize=(10, 3.2))
    left, right = fig.subplots(1, 2, width_ratios=(1, 2))
    left.bar(kinds, [frame.filter(pl.col("kind") == k).height for k in kinds], color="#5b8def")
    left.set_ylabel("pairs")
    values, labels = [], []
    for k in kinds:
        part = frame.filter(pl.col("kind") == k)
        for side in ("chosen", "rejected"):
            chars = part[f"{side}_chars"].drop_nulls().to_list()
            if chars:
                values.append(chars)
                labels.append(f"{k}\n{side}")
    if values:
        right.boxplot(values, tick_labels=labels, showfliers=False, showmeans=True)
    right.set_ylabel("characters")
    return fig


def _evals(frame: pl.DataFrame) -> Figure:
    overall = frame.filter(pl.col("level") == "all")
    labels = [
        f"{m.rsplit('/', 1)[-1]}\n{s}"
        for m, s in overall.select("model", "problem_set").iter_rows()
    ]
    fig = Figure(figsize=(10, 1.2 + 0.5 * max(len(labels), 2)))
    ax = fig.subplots()
    ks = [int(c.removeprefix("pass@")) for c in frame.columns if c.startswith("pass@")]
    height = 0.8 / len(ks)
    for j, k in enumerate(ks):
        ys = [i + j * height for i in range(len(labels))]
        value = overall[f"pass@{k}"].fill_null(0).to_list()
        se = overall[f"se@{k}"].fill_null(0).to_list()
        ax.barh(ys, value, height, xerr=se, label=f"pass@{k}", capsize=2)
    ax.set_yticks([i + height * (len(ks) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("pass@k (± 1 standard error)")
    ax.legend(fontsize=8)
    return fig


def _stage_seconds(frame: pl.DataFrame) -> list[dict[str, float]]:
    out = []
    for summary in frame["summary"].to_list():
        stages = (json.loads(summary) if summary else {}).get("stages") or []
        out.append({s["stage"]: s["seconds"] for s in stages})
    return out


def _runs(frame: pl.DataFrame) -> Figure:
    curate = frame.filter(pl.col("command") == "run")
    per_run = _stage_seconds(curate) if curate.height else []
    stages = list(dict.fromkeys(s for run in per_run for s in run))
    labels = [f"{t:%m-%d %H:%M}" for t in curate["started_at"].to_list()]
    fig = Figure(figsize=(10, 1.2 + 0.35 * max(len(labels), 2)))
    ax = fig.subplots()
    left = [0.0] * len(per_run)
    for stage in stages:
        widths = [run.get(stage, 0.0) for run in per_run]
        ax.barh(range(len(per_run)), widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("seconds")
    if stages:
        ax.legend(fontsize=8, ncols=min(len(stages), 7))
    else:
        ax.text(0.5, 0.5, "no curate run (pitfall run) yet", ha="center", transform=ax.transAxes)
    return fig


def _runs_table(frame: pl.DataFrame) -> str:
    head = (
        "<tr><th>when</th><th>command</th><th>status</th><th>seconds</th><th>stages (s)</th></tr>"
    )
    rows = []
    for r, stages in zip(frame.iter_rows(named=True), _stage_seconds(frame), strict=True):
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        per_stage = ", ".join(f"{s} {v:.1f}" for s, v in stages.items())
        cells = (f"{r['started_at']:%Y-%m-%d %H:%M:%S}", r["command"], r["status"], seconds)
        rows.append(
            "<tr>"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + f"<td>{html.escape(per_stage)}</td></tr>"
        )
    return f"<table id='runs'>{head}{''.join(rows)}</table>"
