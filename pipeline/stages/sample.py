"""Sampling: rounds of sample -> verify -> allocate until DART's targets.

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

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from pipeline.dart import DartPlan, allocate, status
from pipeline.keys import params_key
from pipeline.rows import failed_request_frame, failed_request_row, trace_frame, trace_row
from pipeline.sampling import (
    Failed,
    GenerationFailed,
    Request,
    SamplingParams,
    ServerUnavailable,
    request_seed,
)
from pipeline.stages.base import StageContext, StageResult
from pipeline.stages.verify import verify_pending
from pipeline.verify import VERIFIER


@dataclass
class _Tally:
    rounds: int = 0
    requests: int = 0
    traces: int = 0
    tokens: int = 0
    verdicts: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)  # failed requests by reason
    failed_problems: set[str] = field(default_factory=set)  # not asked again this run


def run(ctx: StageContext) -> StageResult:
    store, settings = ctx.store, ctx.settings
    backend = ctx.backend()
    params = SamplingParams.from_settings(settings.teacher)
    plan = DartPlan.from_settings(settings.dart)
    scope = {
        "model": backend.model,
        "params_id": params_key(params.as_dict()),
        "verifier": VERIFIER,
        "sources": list(ctx.scope.sources),
        "warmup_n": plan.warmup_n,
    }
    tally = _Tally()
    difficulty = None
    tally.verdicts.update(verify_pending(ctx))  # left by a killed run
    for round_no in range(settings.dart.max_rounds + 1):
        counters = store.stage("dart_counters", scope)
        difficulty = status(counters, plan)
        store.replace_rows("difficulty", difficulty)
        todo = allocate(counters, plan)
        if tally.failed_problems:
            todo = todo.filter(~pl.col("problem_id").is_in(list(tally.failed_problems)))
        if todo.height == 0 or round_no == settings.dart.max_rounds:
            break
        tally.rounds += 1
        _sample_round(ctx, backend, params, todo, tally)
        tally.verdicts.update(verify_pending(ctx))
    return _result(tally, difficulty)


def _result(tally: _Tally, difficulty: pl.DataFrame | None) -> StageResult:
    result = StageResult(
        "sample",
        rows_in=tally.requests,
        rows_out=tally.traces,
        tokens=tally.tokens,
        skipped=Counter({f"failed request: {r}": n for r, n in tally.failed.items()}),
        detail={
            "rounds": tally.rounds,
            "verdicts": dict(tally.verdicts),
            "failed requests": dict(tally.failed.most_common()),
        },
    )
    if difficulty is not None and difficulty.height:
        by = (
            difficulty.group_by("status")
            .agg(
                pl.len().alias("problems"),
                pl.col("n_trials").sum().alias("trials"),
                pl.col("n_correct").sum().alias("correct"),
            )
            .sort("status")
        )
        result.detail["difficulty"] = by.to_dicts()
    return result


def _sample_round(
    ctx: StageContext, backend, params: SamplingParams, todo: pl.DataFrame, tally: _Tally
) -> None:
    store = ctx.store
    texts = dict(
        store.stage("problems_for_sampling", {"ids": todo["problem_id"].to_list()}).iter_rows()
    )
    advance = ctx.bar(f"sampling round {tally.rounds}", int(todo["n"].sum()))
    rows = list(todo.iter_rows(named=True))
    spec = params.as_dict()
    params_id = params_key(spec)
    commit_every = ctx.settings.teacher.commit_every
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
                failures.append(
                    failed_request_row(
                        r["problem_id"],
                        backend.model,
                        params_id,
                        r["first_index"],
                        r["n"],
                        completions.reason,
                        store.run_id,
                    )
                )
                tally.failed[completions.reason] += 1
                tally.failed_problems.add(r["problem_id"])
                continue
            for j, c in enumerate(completions or ()):
                index = r["first_index"] + j
                traces.append(trace_row(r["problem_id"], backend.model, spec, index, req.prompt, c))
                tally.tokens += c.completion_tokens or 0
        if traces:
            written = store.insert_new("traces", trace_frame(traces))
            tally.traces += written.inserted
        if failures:
            store.insert_new("failed_requests", failed_request_frame(failures))
        tally.requests += sum(c is not None for c in results)
        if advance:
            advance(sum(len(c) for c in results if isinstance(c, list)))
        if stop is not None:
            raise stop  # what finished is committed; the next run asks for the rest
