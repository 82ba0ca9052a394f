"""Segmentation: every trace without steps is split into steps (``[segment]``)."""

from __future__ import annotations

from pipeline.segment import segment_traces
from pipeline.stages.base import StageContext, StageResult

ROUND = 20_000  # traces segmented and committed at a time


def run(ctx: StageContext) -> StageResult:
    pending = ctx.store.stage("unsegmented_traces")
    s = ctx.settings.segment
    advance = ctx.bar("segmenting", pending.height)
    steps = 0
    for offset in range(0, pending.height, ROUND):
        part = pending.slice(offset, ROUND)
        steps += ctx.store.insert_new(
            "steps", segment_traces(part, s.mode, s.min_chars, s.max_steps)
        ).inserted
        if advance:
            advance(part.height)
    return StageResult(
        "segment", rows_in=pending.height, rows_out=pending.height, detail={"steps": steps}
    )
