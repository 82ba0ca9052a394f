"""Verification: every trace without a verdict from this verifier gets one,
committed in batches, by math-verify in the context's worker pool."""

from __future__ import annotations

from collections import Counter

from pipeline.stages.base import StageContext, StageResult
from pipeline.verify import VERIFIER, verdict_rows


def verify_pending(ctx: StageContext, again: tuple[str, ...] = ()) -> Counter:
    """Verify what is pending; returns the verdicts written by status.

    ``again``: statuses whose verdicts are checked anew and replaced (``timeout``
    verdicts of older pitfalls, whose pool timed out items by the clock under load).
    """
    store = ctx.store
    if again:
        pending = store.stage("reverify_traces", {"verifier": VERIFIER, "statuses": list(again)})
    else:
        pending = store.stage("unverified_traces", {"verifier": VERIFIER})
    counts: Counter = Counter()
    if pending.height == 0:  # no pool started for nothing
        return counts
    write = store.replace_rows if again else store.insert_new
    advance = ctx.bar("verifying", pending.height)
    step, fallback = ctx.settings.verify.commit_every, ctx.settings.verify.fallback
    for offset in range(0, pending.height, step):
        verdicts = verdict_rows(pending.slice(offset, step), ctx.pool(), fallback, advance)
        write("verdicts", verdicts)
        counts.update(verdicts["status"].to_list())
    return counts


def run(ctx: StageContext) -> StageResult:
    counts = verify_pending(ctx, ctx.scope.again)
    n = counts.total()
    return StageResult("verify", rows_in=n, rows_out=n, detail={"verdicts": dict(counts)})
