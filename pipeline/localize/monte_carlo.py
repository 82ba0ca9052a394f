"""Drive Monte-Carlo searches over many traces at once.

What every unfinished search asks for is answered from the rollouts already
known (the store's, loaded by the caller); only the missing ones are
generated. They go to the engine as a stream (``pipeline/overlap.py``): as
soon as a probe's rollouts are verified, its search moves on and its next
probe joins the engine's batch, instead of every search waiting for the
slowest rollout of a pass. New rollouts are handed to ``persist`` before any
search sees them, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import polars as pl

from pipeline.backends.stream import Finished, open_stream
from pipeline.localize.rollouts import Policy, Rollout, Target, rollout_request, rollout_rows
from pipeline.localize.search import BinarySearch, LinearSearch
from pipeline.overlap import drive
from pipeline.profile import Profile
from pipeline.sampling import Request
from pipeline.verify import VerifyPool

SEARCHES = {
    "mc-binary": BinarySearch,
    "mc-binary-confirmed": partial(BinarySearch, confirm=True),
    "mc-linear": LinearSearch,
}
Known = dict[tuple[str, int], dict[int, Rollout]]  # (trace, prefix) -> index -> rollout


@dataclass(frozen=True)
class Located:
    trace_id: str
    first_error: int | None
    n_rollouts: int
    rollout_tokens: int
    probes: dict[int, int]  # prefix -> rollouts its verdict used


def run_searches(
    method: str,
    targets: list[Target],
    statuses: dict[str, str],
    policy: Policy,
    pool: VerifyPool,
    known: Known,
    *,
    k: int,
    threshold: int,
    chunk: int,
    fallback: str,
    persist: Callable[[pl.DataFrame], None] = lambda rows: None,
    progress: Callable[[int], None] | None = None,
    profile: Profile | None = None,
) -> tuple[list[Located], int, int]:
    """First errors for ``targets`` (their verdicts in ``statuses``), and the rollouts
    and completion tokens generated (not reused). A correct trace needs no rollout; a
    wrong one's full trace is dead; any other (truncated, no answer) has its full
    trace probed too."""
    cls = SEARCHES[method]
    by_id = {t.trace_id: t for t in targets}
    searches = {
        t.trace_id: cls(
            len(t.starts),
            k,
            threshold,
            wrong=statuses[t.trace_id] != "correct",
            probe_full=statuses[t.trace_id] not in ("correct", "wrong"),
        )
        for t in targets
    }
    asked: set[tuple[str, int, int]] = set()
    count = {"generated": 0, "tokens": 0}

    def ask() -> list[tuple[tuple[str, int, int], Request]]:
        wanted = [w for w in _feed_known(searches, known) if w not in asked]
        asked.update(wanted)
        return [(w, rollout_request(policy, by_id[w[0]], w[1], w[2])) for w in wanted]

    def on_finished(finished: list[Finished]):
        done = [(by_id[tid], p, i, cs[0]) for (tid, p, i), cs in finished]
        return lambda: rollout_rows(policy, done, pool, fallback)

    def on_verified(rows: pl.DataFrame) -> list[tuple[tuple[str, int, int], Request]]:
        persist(rows)
        for tid, p, i, ok, tokens in rows.select(
            "trace_id", "prefix_len", "rollout_index", "correct", "completion_tokens"
        ).iter_rows():
            known.setdefault((tid, p), {})[i] = Rollout(bool(ok), int(tokens or 0))
        count["generated"] += rows.height
        count["tokens"] += int(rows["completion_tokens"].fill_null(0).sum())
        if progress:
            progress(rows.height)
        return ask()

    first = ask()
    if first:  # else no model is loaded
        stream = open_stream(policy.backend, policy.params)
        drive(stream, first, on_finished, on_verified, flush_requests=chunk, profile=profile)
    located = []
    for tid, s in searches.items():
        tokens = sum(known[(tid, p)][i].tokens for p, n in s.used.items() for i in range(n))
        located.append(Located(tid, s.result, s.n_rollouts, tokens, dict(s.used)))
    return located, count["generated"], count["tokens"]


def _feed_known(searches, known: Known) -> list[tuple[str, int, int]]:
    """Answer every request the known rollouts cover; return the rollouts still missing."""
    while True:
        wanted, fed = [], False
        for tid, s in searches.items():
            for p, n in s.requests():
                have = known.get((tid, p), {})
                missing = [i for i in range(n) if i not in have]
                if missing:
                    wanted.extend((tid, p, i) for i in missing)
                else:
                    s.observe(p, [have[i].correct for i in range(n)])
                    fed = True
        if not fed:
            return wanted
