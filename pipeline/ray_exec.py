"""Ray executors for the parallel parts: verification chunks and sampling shards.

Workers only compute; they return rows to the driver, which alone writes the
store. Both classes keep the interface of their local counterparts
(:class:`pipeline.verify.VerifyPool`, a :class:`pipeline.sampling.Backend`), so
stages do not know where they run.

``address``: ``auto`` joins a running cluster (``ray start --head`` / a
KubeRay head) and starts a local instance when there is none; anything else
is passed to ``ray.init`` (``ray://host:10001``, ``host:6379``).
"""

from __future__ import annotations

import math
import resource
import signal
import time
from collections.abc import Sequence

from pipeline.answer_check import Check, Outcome, checked, quiet
from pipeline.backends.replicas import deal, gather
from pipeline.sampling import Completion, Request, SamplingParams
from pipeline.verify_pool import CHUNK, STALL_FACTOR, START_TIMEOUT_S

# Ray runs its workers at nice 15 so that its own daemons stay responsive. Beside
# other work that starves them: with four busy processes on 2 cores, a model copy
# got 2% of a core and a run that takes minutes on an idle machine did not finish
# in 40. The instance pitfall starts runs them at the driver's priority; a
# cluster's own settings are its owner's.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


def connect(address: str) -> None:
    import ray

    if ray.is_initialized():
        return
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:
            ray.init(log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG)
    else:
        ray.init(address=address, log_to_driver=False)


def disconnect() -> None:
    """Leave Ray; an instance this process started stops, and its processes are
    waited for. Ray's own exit hook does not wait: on a busy machine its raylet
    and GCS outlived a finished `pitfall run --ray auto` by more than 20 s."""
    import ray

    if ray.is_initialized():
        ray.shutdown(wait_for_processes=True)


class _OverBudget(BaseException):  # not an Exception: `checked` must not turn it into a verdict
    pass


def _over_budget(signum, frame):
    raise _OverBudget


def _verify_chunk(checks: list[Check], budget_s: float) -> list[tuple[str, str | None, float]]:
    """Runs in a Ray worker's main thread. Each check may use ``budget_s`` of the
    process's CPU time from when it begins (SIGPROF from ``ITIMER_PROF``), as in
    the local pool: imports happen before any clock starts, and a busy machine
    stretches the wall clock but not the verdicts. A check stuck in C code
    never sees SIGPROF; for it the kernel's CPU limit (``RLIMIT_CPU``, a second
    later) ends the worker, and the pool retries the chunk's checks one by one."""
    import math_verify  # noqa: F401  (a new worker's import is no item's cost)

    quiet()
    out = []
    previous = signal.signal(signal.SIGPROF, _over_budget)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    try:
        for check in checks:
            t0 = time.process_time()
            backstop = math.ceil(t0 + budget_s) + 1
            if hard != resource.RLIM_INFINITY:
                backstop = min(backstop, hard)
            try:
                resource.setrlimit(resource.RLIMIT_CPU, (backstop, hard))
                signal.setitimer(signal.ITIMER_PROF, budget_s)
                status, detail = checked(check)
            except _OverBudget:
                status, detail = "timeout", f"used {budget_s:g} s of CPU"
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
            out.append((status, detail, time.process_time() - t0))
    finally:
        signal.signal(signal.SIGPROF, previous)
    return out


class RayVerifyPool:
    """Verification as Ray tasks, a chunk each, with the local pool's verdicts.

    Each item has ``timeout_s`` of CPU time from when its worker begins it
    (:func:`_verify_chunk`), so verdicts do not depend on the load. The wall
    clock only catches a worker stuck in C code, where no signal is delivered:
    a chunk gets ``START_TIMEOUT_S`` for its worker to start and import, plus
    ``STALL_FACTOR`` times its CPU budget, and is then cancelled with its
    worker killed. At most one chunk per cluster CPU is in flight, so a chunk's
    clock does not run while it queues. A ``timeout`` (either kind), and the
    checks of a chunk whose worker died (at its CPU limit, or killed), are
    retried once, alone, on a fresh worker; a check whose worker dies again
    after its budget's worth of time is a ``timeout``, sooner an ``error``.
    Before, the budget was the wall clock from submission, worker start-up and
    queueing included: under load 32 of 36 toy answers came back ``timeout``.
    """

    def __init__(self, address: str, timeout_s: float):
        import ray

        connect(address)
        self.timeout_s = timeout_s
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_verify_chunk)
        # a worker that exits after its task: retries never meet a worker's leftovers
        self._fresh = ray.remote(num_cpus=1, max_retries=0, max_calls=1)(_verify_chunk)
        self._window = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __enter__(self) -> RayVerifyPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass  # tasks leave nothing behind; the Ray instance outlives the pool

    def run(self, checks: Sequence[Check], progress=None) -> list[Outcome]:
        unique = list(dict.fromkeys(checks))
        results: dict[Check, Outcome] = {}
        chunks = [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]
        self._run_chunks(chunks, results, progress, self._remote)
        again = [c for c in unique if results[c].status in ("timeout", "died")]
        if again:
            self._run_chunks([[c] for c in again], results, None, self._fresh)
        for c in unique:  # died twice, alone the second time
            if results[c].status == "died":
                over = results[c].seconds >= self.timeout_s
                results[c] = Outcome(
                    "timeout" if over else "error",
                    results[c].seconds,
                    "its worker was ended at its CPU limit"
                    if over
                    else f"worker failed: {results[c].detail}",
                )
        return [results[c] for c in checks]

    def _run_chunks(self, chunks, results, progress, remote) -> None:
        import ray

        waiting = list(reversed(chunks))
        started: dict = {}
        while waiting or started:
            while waiting and len(started) < self._window:
                chunk = waiting.pop()
                ref = remote.remote(chunk, self.timeout_s)
                started[ref] = (chunk, time.monotonic())
            done, _ = ray.wait(list(started), num_returns=1, timeout=0.5)
            now = time.monotonic()
            for ref in done:
                chunk, t = started.pop(ref)
                try:
                    rows = ray.get(ref)
                except Exception as exc:  # the worker died (its CPU limit, a kill): retried
                    rows = [("died", type(exc).__name__, now - t)] * len(chunk)
                for check, (status, detail, seconds) in zip(chunk, rows, strict=True):
                    results[check] = Outcome(status, seconds, detail)
                if progress:
                    progress(len(chunk))
            for ref, (chunk, t) in list(started.items()):
                limit = START_TIMEOUT_S + STALL_FACTOR * self.timeout_s * len(chunk)
                if now - t < limit:
                    continue
                ray.cancel(ref, force=True)  # kills the worker process
                started.pop(ref)
                for check in chunk:
                    results[check] = Outcome(
                        "timeout", now - t, f"stalled: no answer in {limit:g} s"
                    )
                if progress:
                    progress(len(chunk))


class _BackendActor:
    def __init__(self, kind: str, model: str, options: dict):
        from pipeline.backends import make_backend

        self.backend = make_backend(kind, model, **options)

    def generate(self, requests, params):
        return self.backend.generate(requests, params)

    def render(self, problem: str, template: str) -> str:
        return self.backend.render(problem, template)


class RayShardedBackend:
    """A backend spread over Ray actors, each holding its own copy of the model.

    Requests are dealt out round-robin and the results put back in order;
    every request carries its own seed, so which actor serves it does not
    change what it returns. One actor per GPU for vLLM when the cluster has
    GPUs (data parallel), else one per CPU for transformers (a quarter of the
    CPUs, at least one, stay free for verification), one for vLLM on a
    CPU (it uses the cores itself) and one for an OpenAI-compatible server
    (its client is already concurrent).
    """

    def __init__(self, address: str, kind: str, model: str, options: dict):
        import ray

        connect(address)
        self.model = model
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        if kind == "vllm" and gpus:
            n, need = gpus, {"num_gpus": 1}
        elif kind == "transformers":
            # leave CPUs for the verification tasks, or they would wait on the actors
            n, need = max(1, cpus - max(1, cpus // 4)), {"num_cpus": 1}
        else:
            n, need = 1, {"num_cpus": 1}
        actor = ray.remote(**need)(_BackendActor)
        options = {**options, "replicas": 1}  # Ray places the copies itself
        self._actors = [actor.remote(kind, model, options) for _ in range(n)]

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        import ray

        if not requests:
            return []
        shards = deal(requests, len(self._actors))
        busy = [i for i, idx in enumerate(shards) if idx]
        refs = [
            self._actors[i].generate.remote([requests[j] for j in shards[i]], params) for i in busy
        ]
        return gather(len(requests), [shards[i] for i in busy], ray.get(refs))

    def render(self, problem: str, template: str) -> str:
        import ray

        return ray.get(self._actors[0].render.remote(problem, template))
