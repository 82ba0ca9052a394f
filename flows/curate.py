"""The curate flow: ingest -> rounds of (sample -> verify -> allocate) -> segment ->
localize -> negatives -> reweight -> export, each stage a Prefect task.

The flow holds the store's write lock for the whole run and is its only
writer; stages are idempotent (every row has a content key), so a task retry,
a rerun or a run after a SIGKILL does only what is missing. Models load on
first use, so a run with nothing new to sample or roll out loads none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.states import Failed

from flows.export import export_datasets
from flows.ingest import ingest_records, source_name
from flows.localize import localize_monte_carlo, rollout_policy, segment_pending
from flows.negatives import build_negatives, reweight
from flows.sample import run_sampling, verify_pending
from pipeline.backends import LazyBackend, make_backend
from pipeline.config import Settings, flow_settings, redacted_settings
from pipeline.ingest import column_map
from pipeline.readers import read_file
from pipeline.sampling import ServerUnavailable
from pipeline.store import Store
from pipeline.verify import VERIFIER, VerifyPool

Progress = Callable[[str, int | None], Callable[[int], None]]

# Progress bars are the caller's (the CLI's); a callable is not a flow parameter
# Prefect could record, so the CLI hands it over here before starting the flow.
progress_bars: Progress | None = None


@dataclass
class StageResult:
    stage: str
    seconds: float = 0.0
    rows_in: int = 0  # what the stage looked at
    rows_out: int = 0  # new rows it wrote
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What the stages share inside one run (never crosses a process boundary)."""

    store: Store
    settings: Settings
    progress: Progress | None = None
    _backends: dict[tuple[str, str], LazyBackend] = field(default_factory=dict)
    _pool: VerifyPool | None = None

    def backend(self, kind: str, model: str) -> LazyBackend:
        if (kind, model) not in self._backends:
            options = self.settings.teacher.model_dump(exclude={"backend", "model"})
            self._backends[(kind, model)] = LazyBackend(
                model, lambda: _make_backend(kind, model, options, self.settings.run.ray)
            )
        return self._backends[(kind, model)]

    def pool(self):
        if self._pool is None:
            v = self.settings.verify
            if self.settings.run.ray:
                from pipeline.ray_exec import RayVerifyPool

                self._pool = RayVerifyPool(self.settings.run.ray, v.timeout_s)
            else:
                self._pool = VerifyPool(v.workers, v.timeout_s).start()
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _make_backend(kind: str, model: str, options: dict, ray: str | None):
    if not ray:
        return make_backend(kind, model, **options)
    from pipeline.ray_exec import RayShardedBackend

    return RayShardedBackend(ray, kind, model, options)


def _timed(stage: str, fn: Callable[[StageResult], None]) -> StageResult:
    result = StageResult(stage)
    t0 = time.perf_counter()
    fn(result)
    result.seconds = round(time.perf_counter() - t0, 2)
    get_run_logger().info(
        "%s: %d in, %d new, %.1f s %s",
        stage,
        result.rows_in,
        result.rows_out,
        result.seconds,
        result.detail or "",
    )
    return result


def _worth_a_retry(task, task_run, state) -> bool:
    """A server the backend already retried until its deadline is not tried again."""
    return not isinstance(state.data, ServerUnavailable)


# Stages are idempotent, so one retry after a transient failure is safe.
STAGE = dict(retries=1, retry_delay_seconds=2, cache_policy=NONE, retry_condition_fn=_worth_a_retry)


@task(name="ingest", **STAGE)
def ingest_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        columns = column_map(ctx.settings.run.preset)
        for name in ctx.settings.run.inputs:
            path = Path(name)
            s = ingest_records(ctx.store, read_file(path), source_name(path), columns, ctx.settings)
            r.rows_in += s.taken + s.skipped + s.quarantined
            r.rows_out += s.taken
            r.detail["quarantined"] = r.detail.get("quarantined", 0) + s.quarantined

    return _timed("ingest", run)


@task(name="sample", **STAGE)
def sample_stage(ctx: RunContext) -> StageResult:
    """Rounds of sample -> verify -> allocate (DART) until every target or cap."""

    def run(r: StageResult) -> None:
        t = ctx.settings.teacher
        backend = ctx.backend(t.backend, t.model)
        s = run_sampling(ctx.store, backend, ctx.settings, [], ctx.progress, pool=ctx.pool())
        r.rows_in = s.requests
        r.rows_out = s.traces
        r.detail = {
            "rounds": s.rounds,
            "tokens": s.completion_tokens,
            "verified": sum(s.verdicts.values()),
            "correct": s.verdicts.get("correct", 0),
            "failed requests": sum(s.failed.values()),
        }

    return _timed("sample", run)


@task(name="verify", **STAGE)
def verify_stage(ctx: RunContext) -> StageResult:
    """Verification alone, for runs without sampling (imported traces)."""

    def run(r: StageResult) -> None:
        counts = verify_pending(ctx.store, ctx.settings, ctx.pool(), ctx.progress)
        r.rows_in = r.rows_out = sum(counts.values())
        r.detail = dict(counts)

    return _timed("verify", run)


@task(name="segment", **STAGE)
def segment_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        r.rows_in = r.rows_out = segment_pending(ctx.store, ctx.settings, ctx.progress)

    return _timed("segment", run)


@task(name="localize", **STAGE)
def localize_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        loc, t = ctx.settings.localize, ctx.settings.teacher
        method = loc.method if loc.method in ("mc-binary", "mc-linear") else "mc-binary"
        backend = ctx.backend(loc.backend or t.backend, loc.model or t.model)
        s = localize_monte_carlo(
            ctx.store,
            method,
            rollout_policy(backend, ctx.settings),
            ctx.pool(),
            ctx.settings,
            progress=ctx.progress,
        )
        r.rows_in = r.rows_out = s.traces
        r.detail = {
            "method": method,
            "rollouts": s.rollouts_generated,
            "rollouts_reused": s.rollouts_used - s.rollouts_generated,
            **dict(s.labels),
        }

    return _timed("localize", run)


@task(name="negatives", **STAGE)
def negatives_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        s = build_negatives(ctx.store, ctx.settings, list(ctx.settings.negatives.kinds))
        r.rows_out = sum(s.built.values())
        r.detail = dict(s.built)

    return _timed("negatives", run)


@task(name="reweight", **STAGE)
def reweight_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        r.rows_out = reweight(ctx.store, ctx.settings).height

    return _timed("reweight", run)


@task(name="export", **STAGE)
def export_stage(ctx: RunContext) -> StageResult:
    def run(r: StageResult) -> None:
        written = export_datasets(ctx.store, ctx.settings)
        r.rows_out = sum(e.rows for e in written)
        r.detail = {"files": [str(e.path) for e in written]}

    return _timed("export", run)


def store_report(store: Store) -> tuple[dict, dict[str, int]]:
    """The store's totals (one row) and its pairs by kind."""
    report = store.stage("report", {"verifier": VERIFIER}).to_dicts()[0]
    return report, dict(store.stage("pairs_by_kind").iter_rows())


@flow(name="pitfall-curate", log_prints=True)
def curate(config: str | None = None, overrides: dict | None = None) -> dict:
    """Run the configured stages. ``config`` is a pitfall.toml (default:
    ./pitfall.toml when present) and ``overrides`` nested settings on top; both
    are plain JSON, so a deployment can carry them as parameters. Values that
    came redacted (credentials in URLs) are read from the environment instead:
    the CLI puts them there (``PITFALL_TEACHER__BASE_URL``)."""
    cfg = flow_settings(config, overrides)
    run = cfg.run
    wait = run.lock_wait_s if run.on_locked == "wait" else 0.0
    with Store.writer(
        cfg.store.path,
        command="run",
        config=redacted_settings(cfg),
        open_timeout_s=cfg.store.open_timeout_s,
        batch_rows=cfg.store.batch_rows,
        lock_wait_s=wait,
    ) as store:
        ctx = RunContext(store, cfg, progress_bars)
        results: list[StageResult] = []
        try:
            stages = set(run.stages)
            if "ingest" in stages:
                results.append(ingest_stage(ctx))
            results.append(sample_stage(ctx) if "sample" in stages else verify_stage(ctx))
            for name, stage in (
                ("segment", segment_stage),
                ("localize", localize_stage),
                ("negatives", negatives_stage),
                ("reweight", reweight_stage),
                ("export", export_stage),
            ):
                if name in stages:
                    results.append(stage(ctx))
        except ServerUnavailable as exc:
            # the stage's task logged it; the run ends Failed, without a traceback
            store.close("failed", {"stages": [asdict(r) for r in results], "error": str(exc)})
            return Failed(message=f"sampling stopped: {exc}", data=exc)
        finally:
            ctx.close()
        report, pairs = store_report(store)
        summary = {
            "stages": [asdict(r) for r in results],
            "report": report,
            "pairs": pairs,
            "run_id": store.run_id,
            "store": str(cfg.store.path),
            "export_dir": str(cfg.export.dir),
        }
        store.close("ok", {"stages": summary["stages"], "report": report})
    return summary
