"""Drive Monte-Carlo searches over many traces at once.

Each pass collects what every unfinished search asks for, answers it from the
rollouts already known (the store's, loaded by the caller), and generates only
the missing ones, in one batched backend call per chunk; new rollouts are
handed to ``persist`` before any search sees them, so a killed run loses at
most the chunk in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import polars as pl

from pipeline.localize.rollouts import Policy, Rollout, Target, generate_rollouts
from pipeline.localize.search import BinarySearch, LinearSearch
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
    generated = tokens_generated = 0
    while True:
        wanted = _feed_known(searches, known)
        if not wanted:
            break
        for offset in range(0, len(wanted), chunk):
            part = [(by_id[tid], p, i) for tid, p, i in wanted[offset : offset + chunk]]
            rows = generate_rollouts(policy, part, pool, fallback)
            persist(rows)
            for tid, p, i, ok, tokens in rows.select(
                "trace_id", "prefix_len", "rollout_index", "correct", "completion_tokens"
            ).iter_rows():
                known.setdefault((tid, p), {})[i] = Rollout(bool(ok), int(tokens or 0))
            generated += rows.height
            tokens_generated += int(rows["completion_tokens"].fill_null(0).sum())
            if progress:
                progress(rows.height)
    located = []
    for tid, s in searches.items():
        tokens = sum(known[(tid, p)][i].tokens for p, n in s.used.items() for i in range(n))
        located.append(Located(tid, s.result, s.n_rollouts, tokens, dict(s.used)))
    return located, generated, tokens_generated


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
