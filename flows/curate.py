"""The curate flow: ingest -> rounds of (sample -> verify -> allocate) -> segment ->
localize -> negatives -> reweight -> export, each stage a Prefect task.

This module only wires: the stages are in ``pipeline/stages/``, one shape each.

The flow holds the store's write lock for the whole run and is its only
writer; stages are idempotent (every row has a content key), so a task retry,
a rerun or a run after a SIGKILL does only what is missing. Models load on
first use, so a run with nothing new to sample or roll out loads none.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed

from pipeline.config import flow_settings, redacted_settings
from pipeline.report import summary_markdown
from pipeline.sampling import ServerUnavailable
from pipeline.stages import StageContext, StageResult, plan, run_stage
from pipeline.stages.base import Progress
from pipeline.store import Store
from pipeline.totals import store_report

# Progress bars are the caller's (the CLI's); a callable is not a flow parameter
# Prefect could record, so the CLI hands it over here before starting the flow.
progress_bars: Progress | None = None
ARTIFACT_KEY = "pitfall-run-summary"


def _worth_a_retry(task, task_run, state) -> bool:
    """A server the backend already retried until its deadline is not tried again."""
    return not isinstance(state.data, ServerUnavailable)


# Stages are idempotent, so one retry after a transient failure is safe.
@task(
    task_run_name="{name}",
    retries=1,
    retry_delay_seconds=2,
    cache_policy=NONE,
    retry_condition_fn=_worth_a_retry,
)
def stage(name: str, ctx: StageContext) -> StageResult:
    result = run_stage(name, ctx)
    get_run_logger().info(
        "%s: %d in, %d new, %.1f s %s",
        name,
        result.rows_in,
        result.rows_out,
        result.seconds,
        result.detail or "",
    )
    return result


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
        results: list[StageResult] = []
        with StageContext(store, cfg, progress_bars) as ctx:
            try:
                for name in plan(run.stages):
                    results.append(stage.with_options(name=name)(name, ctx))
            except ServerUnavailable as exc:
                # the stage's task logged it; the run ends Failed, without a traceback
                stages = [r.as_dict() for r in results]
                store.close("failed", {"stages": stages, "error": str(exc)})
                return Failed(message=f"sampling stopped: {exc}", data=exc)
        report, pairs = store_report(store)
        summary = {
            "stages": [r.as_dict() for r in results],
            "report": report,
            "pairs": pairs,
            "run_id": store.run_id,
            "store": str(cfg.store.path),
            "export_dir": str(cfg.export.dir),
        }
        store.close("ok", {"stages": summary["stages"], "report": report})
    # shown on the flow run's page in the Prefect UI
    create_markdown_artifact(
        markdown=summary_markdown(summary["stages"], report, pairs),
        key=ARTIFACT_KEY,
        description=f"pitfall run {store.run_id}: stages and store totals",
    )
    return summary
