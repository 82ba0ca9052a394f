"""The stages, one module each, all of one shape: ``run(ctx) -> StageResult``.

:data:`STAGES` lists them in the order a run takes them; ``[run] stages``
chooses among them. To add a stage, copy a module here, give it a ``run``,
and register it below and in ``pipeline.config.STAGES``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline import backends, config
from pipeline.stages import export, ingest, localize, negatives, reweight, sample, segment, verify
from pipeline.stages.base import Scope, Source, StageContext, StageResult, timed

STAGES: dict[str, Callable[[StageContext], StageResult]] = {
    "ingest": ingest.run,
    "sample": sample.run,  # verifies as it goes
    "verify": verify.run,
    "segment": segment.run,
    "localize": localize.run,
    "negatives": negatives.run,
    "reweight": reweight.run,
    "export": export.run,
}
assert tuple(STAGES) == config.STAGES, "pipeline.config.STAGES names the stages in this order"


def plan(chosen: list[str]) -> list[str]:
    """The stages a run takes, in order. Verification always runs: inside
    sampling when that is chosen, else on its own (imported traces)."""
    wanted = set(chosen) | ({"verify"} if "sample" not in chosen else set())
    return [name for name in STAGES if name in wanted]


def preload_engine(settings: config.Settings) -> None:
    """Import the teacher's engine when this run may generate with it in this
    process, loading no model: a caller that waits on something else (Prefect's
    server starting) takes that part of the engine's start off the sample stage."""
    if settings.run.ray or not {"sample", "localize"} & set(plan(settings.run.stages)):
        return
    backends.preload(settings.teacher.backend, settings.teacher.replicas)


def run_stage(name: str, ctx: StageContext) -> StageResult:
    return timed(STAGES[name], ctx)


__all__ = [
    "STAGES",
    "Scope",
    "Source",
    "StageContext",
    "StageResult",
    "plan",
    "preload_engine",
    "run_stage",
]
