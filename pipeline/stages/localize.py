"""First-error localization: the first wrong step of each verified trace
(0-based; -1: none; NULL: undetermined), one ``first_errors`` row per
(trace, method).

Methods are registered in :data:`METHODS`; the settings, the CLI's choices
and help, the flow and the docs all read that table. Monte-Carlo rollouts are
stored and reused, so a rerun or another method never pays twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from pipeline.localize.judge import critique_prompt, vote
from pipeline.localize.monte_carlo import SEARCHES, run_searches
from pipeline.localize.rollouts import Policy, Rollout, Target
from pipeline.metrics import processbench_f1
from pipeline.rows import first_error_frame, first_error_row, step_value_key
from pipeline.sampling import Request, SamplingParams, render_prompt, request_seed
from pipeline.stages.base import StageContext, StageResult
from pipeline.store import Store
from pipeline.verify import VERIFIER


@dataclass(frozen=True)
class Method:
    run: Callable[[StageContext, str], StageResult]
    help: str


def rollout_policy(ctx: StageContext) -> Policy:
    """Who continues prefixes: the [localize] policy, the teacher's where unset."""
    t, loc = ctx.settings.teacher, ctx.settings.localize
    params = SamplingParams(
        loc.temperature if loc.temperature is not None else t.temperature,
        t.top_p,
        loc.max_tokens or t.max_tokens,
        loc.seed,
        "raw",  # rollouts continue the trace's own prompt + prefix
    )
    return Policy(ctx.backend(loc.backend, loc.model), params)


def targets(ctx: StageContext, method: str, *, need_gold: bool) -> pl.DataFrame:
    return ctx.store.stage(
        "localize_targets",
        {
            "method": method,
            "verifier": VERIFIER,
            "need_gold": need_gold,
            "per_problem": ctx.settings.localize.per_problem,
            "admit": list(ctx.settings.localize.admit),
            "sources": list(ctx.scope.sources),
            "limit": ctx.scope.limit,
        },
    )


def excluded(ctx: StageContext) -> dict[str, int]:
    """Traces no method localizes, by reason: outcomes ``[localize] admit`` leaves out
    (a truncated trace's steps may all be fine), timeouts and errors."""
    admitted = ["correct", "wrong", *ctx.settings.localize.admit]
    counts = ctx.store.stage(
        "localize_excluded",
        {"verifier": VERIFIER, "admitted": admitted, "sources": list(ctx.scope.sources)},
    )
    return {f"{status} (not localized)": n for status, n in counts.iter_rows()}


def _label_kind(first_error) -> str:
    if first_error is None:
        return "undetermined"
    return "no error" if first_error == -1 else "first error found"


def _result(method: str, looked_at: int, labels: list, **detail) -> StageResult:
    return StageResult(
        "localize",
        rows_in=looked_at,
        rows_out=len(labels),
        detail={"method": method, "labels": dict(Counter(map(_label_kind, labels))), **detail},
    )


def monte_carlo(ctx: StageContext, method: str) -> StageResult:
    store, loc = ctx.store, ctx.settings.localize
    frame = targets(ctx, method, need_gold=True)
    if frame.height == 0:
        return _result(method, 0, [], rollouts_used=0)
    policy = rollout_policy(ctx)
    todo = [
        Target(r["trace_id"], r["prompt"], r["completion"], list(r["starts"]), r["answer"])
        for r in frame.iter_rows(named=True)
    ]
    statuses = dict(zip(frame["trace_id"], frame["status"], strict=True))
    ids = frame["trace_id"].to_list()
    known: dict = {}
    for tid, p, i, ok, tokens in store.stage(
        "known_rollouts", {"policy": policy.id, "ids": ids}
    ).iter_rows():
        known.setdefault((tid, p), {})[i] = Rollout(bool(ok), int(tokens or 0))
    located, generated, tokens = run_searches(
        method,
        todo,
        statuses,
        policy,
        ctx.pool(),
        known,
        k=loc.k,
        threshold=loc.alive_threshold,
        chunk=ctx.settings.teacher.commit_every * 4,
        fallback=ctx.settings.verify.fallback,
        persist=lambda rows: store.insert_new("rollouts", rows),
        progress=ctx.bar(f"{method} rollouts", None),
        profile=ctx.profile,
    )
    _write_values(ctx, policy.id, ids)
    rows = [
        first_error_row(
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
    store.insert_new("first_errors", first_error_frame(rows))
    result = _result(
        method,
        frame.height,
        [x.first_error for x in located],
        rollouts_used=sum(x.n_rollouts for x in located),
    )
    result.rollouts, result.tokens = generated, tokens
    return result


def judge(ctx: StageContext, method: str) -> StageResult:
    """An LLM critic names the first wrong step (ProcessBench prompt), majority of judge_n."""
    store, loc = ctx.store, ctx.settings.localize
    frame = targets(ctx, method, need_gold=False)
    if frame.height == 0:
        return _result(method, 0, [], unparseable_answers=0)
    critic = ctx.backend(loc.backend, loc.judge_model or loc.model)
    params = SamplingParams(loc.judge_temperature, 1.0, loc.judge_max_tokens, loc.seed, "chat")
    chunk = ctx.settings.teacher.commit_every
    advance = ctx.bar("judging", frame.height)
    labels, unparseable, tokens = [], 0, 0
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
        rows = []
        for r, completions in zip(part, critic.generate(requests, params), strict=True):
            v = vote([c.text for c in completions], len(r["step_texts"]))
            used = sum(c.completion_tokens or 0 for c in completions)
            unparseable, tokens = unparseable + v.unparseable, tokens + used
            labels.append(v.first_error)
            rows.append(
                first_error_row(
                    r["trace_id"],
                    method,
                    v.first_error,
                    0,
                    0,
                    {
                        "critic": critic.model,
                        "n": loc.judge_n,
                        "votes": {str(i): c for i, c in sorted(v.votes.items())},
                        "unparseable": v.unparseable,
                        "critic_tokens": used,
                    },
                )
            )
        store.insert_new("first_errors", first_error_frame(rows))
        if advance:
            advance(len(part))
    result = _result(method, frame.height, labels, unparseable_answers=unparseable)
    result.tokens = tokens
    return result


def prm(ctx: StageContext, method: str) -> StageResult:
    """A process reward model scores every step; the first below the threshold is the error."""
    from pipeline.localize.prm import PRMScorer

    loc = ctx.settings.localize
    frame = targets(ctx, method, need_gold=False)
    if frame.height == 0:
        return _result(method, 0, [])
    scorer = PRMScorer(
        loc.prm_model,
        loc.prm_separator,
        loc.prm_threshold,
        trust_remote_code=loc.prm_trust_remote_code,
    )
    advance = ctx.bar("scoring", frame.height)
    rows, labels = [], []
    for r in frame.iter_rows(named=True):
        prompt = render_prompt(scorer.tokenizer, r["problem"], "chat")
        score = scorer.score(prompt, list(r["step_texts"]))
        labels.append(score.first_error)
        rows.append(
            first_error_row(
                r["trace_id"],
                method,
                score.first_error,
                0,
                0,
                {"probabilities": score.probabilities, "threshold": scorer.threshold},
            )
        )
        if advance:
            advance(1)
    ctx.store.insert_new("first_errors", first_error_frame(rows))
    return _result(method, frame.height, labels)


def exact(ctx: StageContext, method: str) -> StageResult:
    """Ground truth from the problem family's step checker (pipeline/localize/exact.py)."""
    from pipeline.localize.exact import checker_for, first_error

    frame = targets(ctx, method, need_gold=False)
    rows, labels, unchecked = [], [], 0
    for r in frame.iter_rows(named=True):
        checker = checker_for(r["problem"])
        if checker is None:
            unchecked += 1
            continue
        label = first_error(checker, r["problem"], r["completion"], list(r["starts"]))
        labels.append(label)
        rows.append(first_error_row(r["trace_id"], method, label, 0, 0, {}))
    if rows:
        ctx.store.insert_new("first_errors", first_error_frame(rows))
    result = _result(method, frame.height, labels)
    if unchecked:
        result.skipped["no step checker for the problem"] = unchecked
    return result


def consensus(ctx: StageContext, method: str) -> StageResult:
    """Keep a label only where the two configured methods agree (both determined)."""
    first, second = ctx.settings.localize.consensus
    pairs = ctx.store.stage("consensus_candidates", {"first": first, "second": second})
    agree = pairs.filter(
        pl.col("first_label").is_not_null() & (pl.col("first_label") == pl.col("second_label"))
    )
    rows = [
        first_error_row(tid, method, label, 0, 0, {"methods": [first, second]})
        for tid, label in agree.select("trace_id", "first_label").iter_rows()
    ]
    ctx.store.insert_new("first_errors", first_error_frame(rows))
    result = _result(method, pairs.height, agree["first_label"].to_list())
    result.skipped["the two methods disagree"] = pairs.height - agree.height
    return result


def annotated(ctx: StageContext, method: str) -> StageResult:
    """Labels that came with `import-traces --label-col`: nothing to compute, only counted."""
    counts = ctx.store.stage("annotated_labels")
    result = _result(method, counts.height, counts["first_error"].to_list())
    result.rows_out = 0
    return result


METHODS: dict[str, Method] = {
    "mc-binary": Method(
        monte_carlo,
        "OmegaPRM binary search over prefixes with k rollouts each; assumes values are "
        "monotone, so it finds an alive-to-dead boundary, the earliest only then",
    ),
    "mc-binary-confirmed": Method(
        monte_carlo,
        "mc-binary, then every prefix before its boundary is probed (stored rollouts "
        "reused): the earliest dead prefix, as mc-linear finds it",
    ),
    "mc-linear": Method(monte_carlo, "Math-Shepherd: k rollouts from every prefix"),
    "prm": Method(prm, "a process reward model's step scores ([localize] prm_model)"),
    "judge": Method(judge, "an LLM critic, ProcessBench prompt, majority of judge_n"),
    "annotated": Method(annotated, "labels imported with `import-traces --label-col`"),
    "consensus": Method(consensus, "a label where the two [localize] consensus methods agree"),
    "exact": Method(
        exact,
        "ground truth from the problem family's step checker (the toy world has one); "
        "problems without a checker are skipped and counted",
    ),
}
assert set(SEARCHES) <= set(METHODS)


def localize(ctx: StageContext, method: str) -> StageResult:
    """Labels by ``method`` for every target it has not labelled yet."""
    result = METHODS[method].run(ctx, method)
    result.skipped.update(excluded(ctx))
    return result


def run(ctx: StageContext) -> StageResult:
    return localize(ctx, ctx.settings.localize.method)


def scores(store: Store, method: str, truth: str) -> list[dict]:
    """ProcessBench scores of ``method``'s labels against ``truth``'s, per source, then
    over all (none when no trace has a ``truth`` label)."""
    pairs = store.stage("localization_pairs", {"method": method, "truth": truth})
    if pairs.height == 0:
        return []
    groups = [(s, g) for (s,), g in pairs.group_by("source", maintain_order=True)]
    return [
        {
            "source": name,
            **processbench_f1(g["label"].to_list(), g["prediction"].to_list()).as_dict(),
        }
        for name, g in [*groups, ("all", pairs)]
    ]


def _write_values(ctx: StageContext, policy: str, ids: list[str]) -> None:
    values = ctx.store.stage("rollout_values", {"policy": policy, "ids": ids})
    if values.height:
        ctx.store.replace_rows(
            "step_values",
            values.with_columns(
                value_id=pl.struct("trace_id", "prefix_len", "policy").map_elements(
                    lambda r: step_value_key(r["trace_id"], r["prefix_len"], r["policy"]),
                    return_dtype=pl.String,
                )
            ),
        )
