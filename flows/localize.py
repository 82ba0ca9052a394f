"""Segmentation and localization wiring: read targets from the store, run a
method, write steps, rollouts, step values and first errors back."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.config import Settings
from pipeline.import_traces import FIRST_ERROR_SCHEMA, first_error_key
from pipeline.keys import content_key
from pipeline.localize.judge import critique_prompt, vote
from pipeline.localize.monte_carlo import SEARCHES, run_searches
from pipeline.localize.rollouts import Policy, Rollout, Target
from pipeline.sampling import Backend, Request, SamplingParams, render_prompt, request_seed
from pipeline.segment import segment_traces
from pipeline.store import Store
from pipeline.verify import VERIFIER, VerifyPool

Progress = Callable[[str, int | None], Callable[[int], None]]
SEGMENT_CHUNK = 20_000


@dataclass
class LocalizeSummary:
    method: str
    traces: int = 0
    rollouts_generated: int = 0
    rollouts_used: int = 0
    labels: Counter = field(default_factory=Counter)  # "-1" / "step" / "undetermined"
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "traces": self.traces,
            "rollouts_generated": self.rollouts_generated,
            "rollouts_used": self.rollouts_used,
            "labels": dict(self.labels),
            **self.detail,
        }


def segment_pending(store: Store, settings: Settings, progress: Progress | None = None) -> int:
    """Split every trace without steps; returns the number of traces segmented."""
    pending = store.stage("unsegmented_traces")
    s = settings.segment
    advance = progress("segmenting", pending.height) if progress and pending.height else None
    for offset in range(0, pending.height, SEGMENT_CHUNK):
        part = pending.slice(offset, SEGMENT_CHUNK)
        store.insert_new("steps", segment_traces(part, s.mode, s.min_chars, s.max_steps))
        if advance:
            advance(part.height)
    return pending.height


def targets(
    store: Store, settings: Settings, method: str, *, need_gold: bool, sources=(), limit=0
) -> pl.DataFrame:
    return store.stage(
        "localize_targets",
        {
            "method": method,
            "verifier": VERIFIER,
            "need_gold": need_gold,
            "per_problem": settings.localize.per_problem,
            "sources": list(sources),
            "limit": limit,
        },
    )


def rollout_policy(backend: Backend, settings: Settings) -> Policy:
    t, loc = settings.teacher, settings.localize
    params = SamplingParams(
        loc.temperature if loc.temperature is not None else t.temperature,
        t.top_p,
        loc.max_tokens or t.max_tokens,
        loc.seed,
        "raw",  # rollouts continue the trace's own prompt + prefix
    )
    return Policy(backend, params)


def localize_monte_carlo(
    store: Store,
    method: str,
    policy: Policy,
    pool: VerifyPool,
    settings: Settings,
    *,
    sources=(),
    limit: int = 0,
    progress: Progress | None = None,
) -> LocalizeSummary:
    if method not in SEARCHES:
        raise ValueError(f"{method} is not a Monte-Carlo method")
    frame = targets(store, settings, method, need_gold=True, sources=sources, limit=limit)
    summary = LocalizeSummary(method, traces=frame.height)
    if frame.height == 0:
        return summary
    todo = [
        Target(r["trace_id"], r["prompt"], r["completion"], list(r["starts"]), r["answer"])
        for r in frame.iter_rows(named=True)
    ]
    wrong = dict(zip(frame["trace_id"], frame["status"] != "correct", strict=True))
    ids = frame["trace_id"].to_list()
    known: dict = {}
    for tid, p, i, ok, tokens in store.stage(
        "known_rollouts", {"policy": policy.id, "ids": ids}
    ).iter_rows():
        known.setdefault((tid, p), {})[i] = Rollout(bool(ok), int(tokens or 0))
    loc = settings.localize
    advance = progress(f"{method} rollouts", None) if progress else None
    located, generated = run_searches(
        method,
        todo,
        wrong,
        policy,
        pool,
        known,
        k=loc.k,
        threshold=loc.alive_threshold,
        chunk=settings.teacher.commit_every * 4,
        fallback=settings.verify.fallback,
        persist=lambda rows: store.insert_new("rollouts", rows),
        progress=advance,
    )
    _write_values(store, policy.id, ids)
    rows = [
        _label_row(
            x.trace_id,
            method,
            x.first_error,
            x.n_rollouts,
            x.rollout_tokens,
            {
                "policy": policy.id,
                "k": loc.k,
                "alive_threshold": loc.alive_threshold,
                "probes": {str(p): n for p, n in sorted(x.probes.items())},
            },
        )
        for x in located
    ]
    store.insert_new("first_errors", pl.DataFrame(rows, schema=FIRST_ERROR_SCHEMA))
    summary.rollouts_generated = generated
    summary.rollouts_used = sum(x.n_rollouts for x in located)
    summary.labels.update(_label_kind(x.first_error) for x in located)
    return summary


def localize_judge(
    store: Store,
    critic: Backend,
    settings: Settings,
    *,
    sources=(),
    limit: int = 0,
    progress: Progress | None = None,
) -> LocalizeSummary:
    loc = settings.localize
    frame = targets(store, settings, "judge", need_gold=False, sources=sources, limit=limit)
    summary = LocalizeSummary("judge", traces=frame.height)
    params = SamplingParams(loc.judge_temperature, 1.0, loc.judge_max_tokens, loc.seed, "chat")
    chunk = settings.teacher.commit_every
    advance = progress("judging", frame.height) if progress and frame.height else None
    unparseable = 0
    for offset in range(0, frame.height, chunk):
        part = list(frame.slice(offset, chunk).iter_rows(named=True))
        requests = [
            Request(
                critic.render(critique_prompt(r["problem"], list(r["step_texts"])), "chat"),
                loc.judge_n,
                request_seed(loc.seed, r["trace_id"], 0),
            )
            for r in part
        ]
        results = critic.generate(requests, params)
        rows = []
        for r, completions in zip(part, results, strict=True):
            v = vote([c.text for c in completions], len(r["step_texts"]))
            unparseable += v.unparseable
            rows.append(
                _label_row(
                    r["trace_id"],
                    "judge",
                    v.first_error,
                    0,
                    0,
                    {
                        "critic": critic.model,
                        "n": loc.judge_n,
                        "votes": {str(i): c for i, c in sorted(v.votes.items())},
                        "unparseable": v.unparseable,
                        "critic_tokens": sum(c.completion_tokens or 0 for c in completions),
                    },
                )
            )
            summary.labels[_label_kind(v.first_error)] += 1
        store.insert_new("first_errors", pl.DataFrame(rows, schema=FIRST_ERROR_SCHEMA))
        if advance:
            advance(len(part))
    summary.detail["unparseable_answers"] = unparseable
    return summary


def localize_prm(
    store: Store,
    scorer,
    settings: Settings,
    *,
    sources=(),
    limit: int = 0,
    progress: Progress | None = None,
) -> LocalizeSummary:
    frame = targets(store, settings, "prm", need_gold=False, sources=sources, limit=limit)
    summary = LocalizeSummary("prm", traces=frame.height)
    advance = progress("scoring", frame.height) if progress and frame.height else None
    rows = []
    for r in frame.iter_rows(named=True):
        prompt = render_prompt(scorer.tokenizer, r["problem"], "chat")
        score = scorer.score(prompt, list(r["step_texts"]))
        rows.append(
            _label_row(
                r["trace_id"],
                "prm",
                score.first_error,
                0,
                0,
                {"probabilities": score.probabilities, "threshold": scorer.threshold},
            )
        )
        summary.labels[_label_kind(score.first_error)] += 1
        if advance:
            advance(1)
    store.insert_new("first_errors", pl.DataFrame(rows, schema=FIRST_ERROR_SCHEMA))
    return summary


def localize_consensus(store: Store, settings: Settings) -> LocalizeSummary:
    """Keep a label only where the two configured methods agree (both determined)."""
    first, second = settings.localize.consensus
    pairs = store.stage("consensus_candidates", {"first": first, "second": second})
    agree = pairs.filter(
        pl.col("first_label").is_not_null() & (pl.col("first_label") == pl.col("second_label"))
    )
    rows = [
        _label_row(tid, "consensus", label, 0, 0, {"methods": [first, second]})
        for tid, label in agree.select("trace_id", "first_label").iter_rows()
    ]
    store.insert_new("first_errors", pl.DataFrame(rows, schema=FIRST_ERROR_SCHEMA))
    summary = LocalizeSummary("consensus", traces=pairs.height)
    summary.labels.update(_label_kind(label) for label in agree["first_label"])
    summary.detail["disagreements"] = pairs.height - agree.height
    return summary


def annotated_summary(store: Store) -> LocalizeSummary:
    """``annotated`` labels arrive with `import-traces --label-col`; nothing to compute."""
    counts = store.stage("annotated_labels")
    summary = LocalizeSummary("annotated", traces=counts.height)
    summary.labels.update(_label_kind(v) for v in counts["first_error"].to_list())
    return summary


# ------------------------------------------------------------------ helpers


def _write_values(store: Store, policy: str, ids: list[str]) -> None:
    values = store.stage("rollout_values", {"policy": policy, "ids": ids})
    if values.height:
        store.replace_rows(
            "step_values",
            values.with_columns(
                value_id=pl.struct("trace_id", "prefix_len", "policy").map_elements(
                    lambda r: content_key(
                        "step_value", r["trace_id"], r["prefix_len"], r["policy"]
                    ),
                    return_dtype=pl.String,
                )
            ),
        )


def _label_row(
    trace_id: str, method: str, first_error, n_rollouts: int, tokens: int, detail: dict
) -> dict:
    return {
        "first_error_id": first_error_key(trace_id, method),
        "trace_id": trace_id,
        "method": method,
        "first_error": first_error,
        "n_rollouts": n_rollouts,
        "rollout_tokens": tokens,
        "detail": json.dumps(detail),
    }


def _label_kind(first_error) -> str:
    if first_error is None:
        return "undetermined"
    return "no error" if first_error == -1 else "first error found"
