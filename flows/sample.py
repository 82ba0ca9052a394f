"""Sampling wiring: rounds of sample -> verify -> allocate until DART's targets.

Counters are read back from the store every round, so a killed run resumes
where it stopped: traces are committed a chunk of requests at a time, a
restart first verifies what is unverified, and each problem's requests are
seeded by (base seed, problem, first sample index), so the same problem asks
for the same samples again.

A request the server cannot answer (HTTP 400, an answer that stays malformed)
writes no trace, only a ``failed_requests`` row with its reason: the problem's
sample indices stay contiguous, so the next run asks for the same first index
with the same seed. Within a run such a problem is not asked again (a
deterministic 400 would repeat every round). When the server itself is
unusable, the finished requests are committed and :class:`ServerUnavailable`
ends the stage.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.config import Settings
from pipeline.dart import DartPlan, allocate, status
from pipeline.keys import content_key, params_key, trace_key
from pipeline.sampling import (
    Backend,
    Failed,
    GenerationFailed,
    Request,
    SamplingParams,
    ServerUnavailable,
    request_seed,
)
from pipeline.store import Store
from pipeline.verify import VERIFIER, VerifyPool, verdict_rows

Progress = Callable[[str, int | None], Callable[[int], None]]  # (label, total) -> advance(n)


@dataclass
class SampleSummary:
    rounds: int = 0
    requests: int = 0
    traces: int = 0
    completion_tokens: int = 0
    verdicts: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)  # failed requests by reason
    failed_problems: set[str] = field(default_factory=set)  # not asked again this run
    difficulty: pl.DataFrame | None = None


def sampling_params(settings: Settings) -> SamplingParams:
    t = settings.teacher
    return SamplingParams(t.temperature, t.top_p, t.max_tokens, t.seed, t.template)


def dart_plan(settings: Settings) -> DartPlan:
    d = settings.dart
    return DartPlan(d.strategy, d.k_u, d.k_p, d.n_fixed, d.n_max, d.round_size, d.warmup_n)


def verify_pending(
    store: Store,
    settings: Settings,
    pool: VerifyPool,
    progress: Progress | None = None,
    again: tuple[str, ...] = (),
) -> Counter:
    """Verify every trace without a verdict from this verifier, committing as it goes.

    ``again``: statuses whose verdicts are checked anew and replaced (``timeout``
    verdicts of older pitfalls, whose pool timed out items by the clock under load).
    """
    if again:
        pending = store.stage("reverify_traces", {"verifier": VERIFIER, "statuses": list(again)})
    else:
        pending = store.stage("unverified_traces", {"verifier": VERIFIER})
    write = store.replace_rows if again else store.insert_new
    advance = progress("verifying", pending.height) if progress and pending.height else None
    counts: Counter = Counter()
    step = settings.verify.commit_every
    for offset in range(0, pending.height, step):
        verdicts = verdict_rows(
            pending.slice(offset, step), pool, settings.verify.fallback, advance
        )
        write("verdicts", verdicts)
        counts.update(verdicts["status"].to_list())
    return counts


def run_sampling(
    store: Store,
    backend: Backend,
    settings: Settings,
    sources: list[str],
    progress: Progress | None = None,
    on_round: Callable[[int, pl.DataFrame], None] | None = None,
    pool: VerifyPool | None = None,
) -> SampleSummary:
    params, plan = sampling_params(settings), dart_plan(settings)
    scope = {
        "model": backend.model,
        "params_id": params_key(params.as_dict()),
        "verifier": VERIFIER,
        "sources": sources,
    }
    summary = SampleSummary()
    v = settings.verify
    with (
        VerifyPool(v.workers, v.timeout_s) if pool is None else contextlib.nullcontext(pool) as pool
    ):
        # left by a killed run
        summary.verdicts.update(verify_pending(store, settings, pool, progress))
        for round_no in range(settings.dart.max_rounds + 1):
            counters = store.stage("dart_counters", scope)
            summary.difficulty = status(counters, plan)
            store.replace_rows("difficulty", summary.difficulty)
            todo = allocate(counters, plan)
            if summary.failed_problems:
                todo = todo.filter(~pl.col("problem_id").is_in(list(summary.failed_problems)))
            if on_round:
                on_round(round_no, summary.difficulty)
            if todo.height == 0 or round_no == settings.dart.max_rounds:
                break
            summary.rounds += 1
            _sample_round(
                store, backend, params, todo, summary, progress, settings.teacher.commit_every
            )
            summary.verdicts.update(verify_pending(store, settings, pool, progress))
    return summary


def _sample_round(
    store, backend, params, todo: pl.DataFrame, summary: SampleSummary, progress, commit_every: int
) -> None:
    texts = dict(
        store.stage("problems_for_sampling", {"ids": todo["problem_id"].to_list()}).iter_rows()
    )
    advance = (
        progress(f"sampling round {summary.rounds}", int(todo["n"].sum())) if progress else None
    )
    rows = list(todo.iter_rows(named=True))
    spec = params.as_dict()
    params_id, params_json = params_key(spec), json.dumps(spec)
    for offset in range(0, len(rows), commit_every):
        chunk = rows[offset : offset + commit_every]
        requests = [
            Request(
                backend.render(texts[r["problem_id"]], params.template),
                r["n"],
                request_seed(params.seed, r["problem_id"], r["first_index"]),
            )
            for r in chunk
        ]
        stop = None
        try:
            results: list = backend.generate(requests, params)
        except GenerationFailed as exc:
            results = exc.results
            stop = exc if isinstance(exc, ServerUnavailable) else None
        traces, failures = [], []
        for r, req, completions in zip(chunk, requests, results, strict=True):
            if isinstance(completions, Failed):
                failures.append(_failure_row(store, backend.model, params_id, r, completions))
                summary.failed[completions.reason] += 1
                summary.failed_problems.add(r["problem_id"])
                continue
            for j, c in enumerate(completions or ()):
                index = r["first_index"] + j
                traces.append(
                    {
                        "trace_id": trace_key(r["problem_id"], backend.model, spec, index),
                        "problem_id": r["problem_id"],
                        "model": backend.model,
                        "params_id": params_id,
                        "params": params_json,
                        "sample_index": index,
                        "prompt": req.prompt,
                        "completion": c.text,
                        "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "latency_s": c.latency_s,
                        "origin": "sampled",
                    }
                )
                summary.completion_tokens += c.completion_tokens or 0
        if traces:
            written = store.insert_new("traces", pl.DataFrame(traces, infer_schema_length=None))
            summary.traces += written.inserted
        if failures:
            store.insert_new("failed_requests", pl.DataFrame(failures))
        summary.requests += sum(c is not None for c in results)
        if advance:
            advance(sum(len(c) for c in results if isinstance(c, list)))
        if stop is not None:
            raise stop  # what finished is committed; the next run asks for the rest


def _failure_row(store: Store, model: str, params_id: str, r: dict, failed: Failed) -> dict:
    """A request that wrote no trace, per run: a rerun that fails again adds its own row."""
    parts = (r["problem_id"], model, params_id, r["first_index"], r["n"], store.run_id)
    return {
        "failure_id": content_key("failed_request", *parts),
        "problem_id": r["problem_id"],
        "model": model,
        "params_id": params_id,
        "first_index": r["first_index"],
        "n": r["n"],
        "reason": failed.reason,
    }
