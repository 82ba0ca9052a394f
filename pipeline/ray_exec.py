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

import time
from collections.abc import Sequence

from pipeline.answer_check import Check, Outcome, checked, quiet
from pipeline.backends.replicas import deal, gather
from pipeline.sampling import Completion, Request, SamplingParams
from pipeline.verify_pool import CHUNK


def connect(address: str) -> None:
    import ray

    if ray.is_initialized():
        return
    if address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:
            ray.init(log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def _verify_chunk(checks: list[Check]) -> list[tuple[str, str | None, float]]:
    quiet()
    out = []
    for check in checks:
        t0 = time.monotonic()
        status, detail = checked(check)
        out.append((status, detail, time.monotonic() - t0))
    return out


class RayVerifyPool:
    """Verification as Ray tasks, a chunk each. A chunk that overruns its
    budget (timeout per item x items) is cancelled with its worker killed and
    its items are retried one per task; an item that overruns alone is a
    ``timeout`` verdict, as in the local pool."""

    def __init__(self, address: str, timeout_s: float):
        import ray

        connect(address)
        self.timeout_s = timeout_s
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_verify_chunk)

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
        self._run_chunks(chunks, results, progress, split_on_timeout=True)
        return [results[c] for c in checks]

    def _run_chunks(self, chunks, results, progress, split_on_timeout: bool) -> None:
        import ray

        started = {self._remote.remote(chunk): (chunk, time.monotonic()) for chunk in chunks}
        retry: list[list[Check]] = []
        while started:
            done, _ = ray.wait(list(started), num_returns=1, timeout=0.2)
            now = time.monotonic()
            for ref in done:
                chunk, _t = started.pop(ref)
                try:
                    rows = ray.get(ref)
                except Exception as exc:  # the worker died: a verdict, not a crash
                    rows = [("error", f"worker failed: {type(exc).__name__}", 0.0)] * len(chunk)
                for check, (status, detail, seconds) in zip(chunk, rows, strict=True):
                    results[check] = Outcome(status, seconds, detail)
                if progress:
                    progress(len(chunk))
            for ref, (chunk, t) in list(started.items()):
                if now - t < self.timeout_s * len(chunk) + 1.0:
                    continue
                ray.cancel(ref, force=True)  # kills the worker process
                started.pop(ref)
                if split_on_timeout and len(chunk) > 1:
                    retry.extend([c] for c in chunk)
                    continue
                for check in chunk:
                    results[check] = Outcome(
                        "timeout", now - t, f"killed after {self.timeout_s:g} s"
                    )
                if progress:
                    progress(len(chunk))
        if retry:
            self._run_chunks(retry, results, progress, split_on_timeout=False)


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
