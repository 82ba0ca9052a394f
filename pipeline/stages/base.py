"""The one shape of a stage: ``run(ctx: StageContext) -> StageResult``.

A stage reads what it needs from the store, does its work and writes new
rows back; it is idempotent (every row has a content key), so a retry or a
rerun does only what is missing. The context carries what stages share inside
one command or flow run; it never crosses a process boundary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.backends import LazyBackend, backend_options, make_backend
from pipeline.config import Settings
from pipeline.ingest import ColumnMap
from pipeline.profile import Profile
from pipeline.readers import Record
from pipeline.sampling import Backend
from pipeline.store import Store
from pipeline.verify import VerifyPool

# (label, total or None) -> advance(n); the caller draws the bars
Progress = Callable[[str, int | None], Callable[[int], None]]


@dataclass(frozen=True)
class Source:
    """One input of ingest or import-traces; ``open`` is deferred so a bad file
    fails inside the stage, after the store is open."""

    name: str
    open: Callable[[], Iterable[Record]]
    columns: ColumnMap


@dataclass(frozen=True)
class Scope:
    """What a command points a stage at beyond the settings; the flow leaves it empty."""

    inputs: tuple[Source, ...] = ()  # ingest / import-traces: default [run] inputs
    sources: tuple[str, ...] = ()  # only problems from these sources
    limit: int = 0  # localize at most this many traces (0: all)
    again: tuple[str, ...] = ()  # verify: replace the verdicts with these statuses
    model: str = ""  # reweight: only this model's traces


@dataclass
class StageResult:
    stage: str
    seconds: float = 0.0
    rows_in: int = 0  # what the stage looked at
    rows_out: int = 0  # new rows it wrote
    tokens: int = 0  # completion tokens generated (samples, rollouts, critiques)
    rollouts: int = 0  # rollouts generated
    skipped: Counter = field(default_factory=Counter)  # rows left out, by reason
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**asdict(self), "skipped": dict(self.skipped)}


@dataclass
class StageContext:
    store: Store
    settings: Settings
    progress: Progress | None = None
    scope: Scope = Scope()
    teacher: Backend | None = None  # a backend already built, used as the teacher's
    profile: Profile = field(default_factory=Profile)  # the running stage's (see timed)
    _backends: dict[tuple[str, str], Backend] = field(default_factory=dict)
    _pool: Any = None

    def __post_init__(self):
        if self.teacher is not None:
            t, built = self.settings.teacher, self.teacher
            # the built backend's own name goes into the keys, as it did unwrapped
            self._backends[(t.backend, t.model)] = LazyBackend(
                built.model, lambda: built, self.profile
            )

    def bar(self, label: str, total: int | None) -> Callable[[int], None] | None:
        """A progress bar's advance, or None when nobody draws them or there is nothing to do."""
        if self.progress is None or total == 0:
            return None
        return self.progress(label, total)

    def backend(self, kind: str | None = None, model: str | None = None) -> Backend:
        """The backend ``kind`` serving ``model`` (default: the teacher's), built on
        first use and shared by the stages of this run."""
        t = self.settings.teacher
        key = (kind or t.backend, model or t.model)
        if key not in self._backends:
            options = backend_options(key[0], t)
            ray = self.settings.run.ray
            self._backends[key] = LazyBackend(
                key[1], lambda: _make_backend(*key, options, ray), self.profile
            )
        return self._backends[key]

    def pool(self):
        """The verification pool, started on first use; its batches are timed."""
        if self._pool is None:
            v = self.settings.verify
            with self.profile.span("verifier start"):
                if self.settings.run.ray:
                    from pipeline.ray_exec import RayVerifyPool

                    self._pool = RayVerifyPool(self.settings.run.ray, v.timeout_s)
                else:
                    self._pool = VerifyPool(v.workers, v.timeout_s).start()
        return _TimedPool(self._pool, self.profile)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self.settings.run.ray:  # a Ray instance this run started stops with it
            from pipeline.ray_exec import disconnect

            disconnect()

    def __enter__(self) -> StageContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _make_backend(kind: str, model: str, options: dict, ray: str | None):
    if not ray:
        return make_backend(kind, model, **options)
    from pipeline.ray_exec import RayShardedBackend

    return RayShardedBackend(ray, kind, model, options)


class _TimedPool:
    """A verification pool whose ``run`` calls count as the profile's "verify"."""

    def __init__(self, pool, profile: Profile):
        self._pool, self._profile = pool, profile

    def run(self, *args, **kwargs):
        with self._profile.span("verify"):
            return self._pool.run(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


def timed(run: Callable[[StageContext], StageResult], ctx: StageContext) -> StageResult:
    """Run a stage; its result gets its seconds and where they went (``detail["profile"]``)."""
    ctx.profile.reset()
    store0, t0 = ctx.store.busy_s, time.perf_counter()
    result = run(ctx)
    wall = time.perf_counter() - t0
    result.seconds = round(wall, 2)
    result.detail["profile"] = ctx.profile.summary(wall, ctx.store.busy_s - store0)
    return result
