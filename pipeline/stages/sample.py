"""Sampling: sample -> verify -> allocate per problem until DART's targets.

No rounds: each problem's next samples are asked for as soon as its last ones
are verified (``pipeline/overlap.py``), while the engine goes on with the
others, so it never waits for a round's slowest sequence or for verification.
A problem's requests are the ones rounds would make -- DART decides on the
problem's own counters, and prop2diff's targets wait until every problem has
its warm-up -- so the keys are the same (and with the transformers backend,
which samples each request alone, the texts too).

Counters are read from the store at the start, so a killed run resumes where
it stopped: traces are committed every few seconds of finished requests, a
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
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.backends.stream import Finished, open_stream
from pipeline.dart import DartPlan, allocate, status
from pipeline.keys import params_key
from pipeline.overlap import drive
from pipeline.rows import failed_request_frame, failed_request_row, trace_frame, trace_row
from pipeline.sampling import Failed, Request, SamplingParams, request_seed
from pipeline.stages.base import StageContext, StageResult
from pipeline.stages.verify import verify_pending
from pipeline.verify import VERIFIER, verdict_rows


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
    tally.verdicts.update(verify_pending(ctx))  # left by a killed run
    sampler = _Sampler(ctx, backend, params, plan, store.stage("dart_counters", scope), tally)
    store.replace_rows("difficulty", status(sampler.counters(), plan))
    first = sampler.next_requests()
    if first:
        drive(
            open_stream(backend, params),
            first,
            sampler.on_finished,
            sampler.on_verified,
            flush_requests=settings.teacher.commit_every,
            profile=ctx.profile,
        )
    difficulty = status(sampler.counters(), plan)
    store.replace_rows("difficulty", difficulty)
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


class _Sampler:
    """DART per problem: its counters, what it has asked for, what comes back."""

    def __init__(self, ctx: StageContext, backend, params: SamplingParams, plan: DartPlan,
                 counters: pl.DataFrame, tally: _Tally):  # fmt: skip
        self.ctx, self.backend, self.params, self.plan = ctx, backend, params, plan
        self.tally = tally
        self.spec = params.as_dict()
        self.params_id = params_key(self.spec)
        self.schema = counters.schema
        self.counts = {r["problem_id"]: r for r in counters.iter_rows(named=True)}
        self.out: dict[tuple[str, int], Request] = {}  # (problem, first index) -> request
        self.asked: Counter = Counter()  # requests per problem this run (<= max_rounds)
        self.problems: dict[str, tuple[str, str]] = {}  # id -> (text, gold answer)
        self.advance = ctx.bar("sampling", None)

    def counters(self) -> pl.DataFrame:
        return pl.DataFrame(list(self.counts.values()), schema=self.schema, orient="row")

    def next_requests(self) -> list[tuple[tuple[str, int], Request]]:
        """What DART asks for now, from the problems with nothing out."""
        limit = self.ctx.settings.dart.max_rounds
        waiting = {pid for pid, _ in self.out} | self.tally.failed_problems
        waiting |= {pid for pid, k in self.asked.items() if k >= limit}
        todo = allocate(self.counters(), self.plan)
        todo = todo.filter(~pl.col("problem_id").is_in(list(waiting)))
        missing = [pid for pid in todo["problem_id"] if pid not in self.problems]
        if missing:
            rows = self.ctx.store.stage("problems_for_sampling", {"ids": missing}).iter_rows()
            self.problems.update({pid: (text, gold) for pid, text, gold in rows})
        asked = []
        for pid, first, n in todo.select("problem_id", "first_index", "n").iter_rows():
            prompt = self.backend.render(self.problems[pid][0], self.params.template)
            request = Request(prompt, n, request_seed(self.params.seed, pid, first))
            self.out[(pid, first)] = request
            self.asked[pid] += 1
            asked.append(((pid, first), request))
        if self.asked:
            self.tally.rounds = max(self.asked.values())
        return asked

    def on_finished(self, finished: list[Finished]) -> Callable[[], tuple]:
        """Store the traces (or the failures) of finished requests; return their verification."""
        store, model, tally = self.ctx.store, self.backend.model, self.tally
        traces, failures, where = [], [], {}
        for (pid, first), result in finished:
            request = self.out[(pid, first)]
            if isinstance(result, Failed):
                failures.append(failed_request_row(
                    pid, model, self.params_id, first, request.n, result.reason, store.run_id
                ))  # fmt: skip
                tally.failed[result.reason] += 1
                tally.failed_problems.add(pid)
                continue
            for j, c in enumerate(result):
                row = trace_row(pid, model, self.spec, first + j, request.prompt, c)
                traces.append(row)
                where[row["trace_id"]] = (pid, first + j)
                tally.tokens += c.completion_tokens or 0
        tally.requests += len(finished)
        if traces:
            tally.traces += store.insert_new("traces", trace_frame(traces)).inserted
        if failures:
            store.insert_new("failed_requests", failed_request_frame(failures))
        if self.advance:
            self.advance(len(traces))
        keys = [key for key, _ in finished]
        if not traces:
            return lambda: (keys, where, None)
        frame = pl.DataFrame(
            {
                "trace_id": [r["trace_id"] for r in traces],
                "completion": [r["completion"] for r in traces],
                "finish_reason": [r["finish_reason"] for r in traces],
                "answer": [self.problems[r["problem_id"]][1] for r in traces],
            }
        )
        ctx, fallback = self.ctx, self.ctx.settings.verify.fallback
        # the pool starts (the first time) beside the engine too
        return lambda: (keys, where, verdict_rows(frame, ctx.pool(), fallback))

    def on_verified(self, result: tuple) -> list[tuple[tuple[str, int], Request]]:
        """Store the verdicts, count them, and ask for what follows."""
        keys, where, verdicts = result
        if verdicts is not None:
            self.ctx.store.insert_new("verdicts", verdicts)
            warm = self.plan.warmup_n
            for tid, st in verdicts.select("trace_id", "status").iter_rows():
                pid, index = where[tid]
                c, ok = self.counts[pid], st == "correct"
                c["n_trials"] += 1
                c["n_correct"] += ok
                c["warmup_trials"] += index < warm
                c["warmup_correct"] += ok and index < warm
                self.tally.verdicts[st] += 1
        for key in keys:
            del self.out[key]
        return self.next_requests()
