"""Rollouts: continuations of a trace prefix by a policy, checked against the gold answer.

A rollout is keyed by (trace, prefix length, policy, rollout index) and its
seed derives from the same parts, so any method, rerun or resumed run that
needs rollout i of a prefix finds it in the store instead of paying again.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.keys import params_key
from pipeline.rows import ROLLOUT_SCHEMA, rollout_row
from pipeline.sampling import Backend, Completion, Request, SamplingParams, request_seed
from pipeline.segment import prefix_text
from pipeline.verify import Answer, VerifyPool, judge


@dataclass(frozen=True)
class Policy:
    """Who continues prefixes: a backend and its sampling parameters."""

    backend: Backend
    params: SamplingParams

    @property
    def id(self) -> str:
        # "credit": how a rollout is judged (its continuation's own answer; stores
        # from before judged prefix + continuation, and those rollouts are not reused)
        spec = {"model": self.backend.model, **self.params.as_dict(), "credit": "continuation"}
        return params_key(spec)


@dataclass(frozen=True)
class Target:
    """One trace under localization: what a rollout needs to continue and check it."""

    trace_id: str
    prompt: str
    completion: str
    starts: list[int]  # char offset of each step
    answer: str


@dataclass(frozen=True)
class Rollout:
    correct: bool
    tokens: int


def rollout_request(policy: Policy, target: Target, prefix_len: int, index: int) -> Request:
    """Rollout ``index`` of a prefix: the trace's prompt and first ``prefix_len`` steps,
    continued once with a seed of its own."""
    return Request(
        target.prompt + prefix_text(target.completion, target.starts, prefix_len),
        1,
        request_seed(policy.params.seed, f"{target.trace_id}:{prefix_len}", index),
    )


def rollout_rows(
    policy: Policy,
    done: list[tuple[Target, int, int, Completion]],
    pool: VerifyPool,
    fallback: str,
) -> pl.DataFrame:
    """Rows for finished rollouts, as (target, prefix length, index, completion).

    The answer is read from the continuation alone (a box, an "answer is"
    phrase, or the fallback's last number of the continuation): a number in the
    prefix is the trace's work, not the rollout's answer, and crediting it
    would make an empty continuation "reach" the gold answer. It is checked
    like any trace; a rollout cut at max_tokens is not correct.
    """
    if not done:
        return pl.DataFrame(schema=ROLLOUT_SCHEMA)
    pid = policy.id
    rows = [rollout_row(t.trace_id, p, pid, i, c) for t, p, i, c in done]
    answers = [Answer(c.text, c.finish_reason, t.answer) for t, _, _, c in done]
    for row, verdict in zip(rows, judge(answers, pool, fallback), strict=True):
        row["correct"] = verdict.status == "correct"
    return pl.DataFrame(rows, schema=ROLLOUT_SCHEMA)


def generate_rollouts(
    policy: Policy,
    wanted: list[tuple[Target, int, int]],
    pool: VerifyPool,
    fallback: str,
) -> pl.DataFrame:
    """Rows for the rollouts ``wanted`` as (target, prefix length, rollout index),
    generated in one call."""
    requests = [rollout_request(policy, t, p, i) for t, p, i in wanted]
    results = policy.backend.generate(requests, policy.params) if wanted else []
    done = [(t, p, i, cs[0]) for (t, p, i), cs in zip(wanted, results, strict=True)]
    return rollout_rows(policy, done, pool, fallback)
