"""Several copies of one backend in worker processes, requests dealt out between them.

A tiny model does not keep even two cores busy through one engine: vLLM on
the CPU spends most of a step in one thread (BENCHMARKS.md, sampling
throughput). Two engines, each pinned to its own cores, use the machine. On a
host with GPUs each copy gets one device instead. Every request carries its own
seed, so which copy serves it does not change what it returns.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import traceback
import weakref

from pipeline.procs import die_with_parent
from pipeline.sampling import Completion, Request, SamplingParams, render_prompt


def deal(requests: list, n: int) -> list[list[int]]:
    """Round-robin shards of request indices, one per copy (some may be empty)."""
    return [list(range(i, len(requests), n)) for i in range(n)]


def gather(n_requests: int, shards: list[list[int]], results: list[list]) -> list:
    """Put per-shard results back in request order."""
    out: list = [None] * n_requests
    for idx, res in zip(shards, results, strict=True):
        for j, r in zip(idx, res, strict=True):
            out[j] = r
    return out


def split_cores(cores: list[int], n: int) -> list[list[int]]:
    """``n`` contiguous, disjoint slices of ``cores`` that cover them all."""
    if n > len(cores):
        raise ValueError(f"{n} replicas need at least {n} cores; this process may use {len(cores)}")
    size, extra = divmod(len(cores), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(cores[start:end])
        start = end
    return out


def _serve(
    conn,
    kind: str,
    model: str,
    options: dict,
    cores: list[int] | None,
    gpu: int | None,
    parent: int,
):
    # a copy busy generating would not notice a SIGKILLed parent until it tried to answer
    die_with_parent(signal.SIGKILL, parent)
    # runs in the child before torch or vLLM is imported: the pinning must come first
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if cores is not None:
        os.sched_setaffinity(0, cores)
        os.environ["OMP_NUM_THREADS"] = str(len(cores))
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    try:
        from pipeline.backends import make_backend

        backend = make_backend(kind, model, **options)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", sorted(os.sched_getaffinity(0))))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if msg is None:
            return
        try:
            conn.send(("ok", backend.generate(*msg)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


def _stop(procs, conns) -> None:
    for c in conns:
        with contextlib.suppress(OSError):  # that copy is already gone
            c.send(None)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()


class ReplicatedBackend:
    """``replicas`` copies of a ``vllm`` or ``transformers`` backend, one process each."""

    def __init__(self, kind: str, model: str, replicas: int, options: dict):
        if kind not in ("vllm", "transformers"):
            raise ValueError(
                f"replicas are for the vllm and transformers backends, not {kind!r}"
                " (an OpenAI-compatible server is already concurrent: raise `concurrency`)"
            )
        from transformers import AutoTokenizer

        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(model)  # prompts render here
        gpus = _gpu_count() if kind == "vllm" else 0
        slices: list[list[int] | None]
        if gpus:
            slices, devices = [None] * replicas, [i % gpus for i in range(replicas)]
        else:
            slices = split_cores(sorted(os.sched_getaffinity(0)), replicas)  # type: ignore[assignment]
            devices = [None] * replicas
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited threads or engines
        self._conns, self._procs = [], []
        for cores, gpu in zip(slices, devices, strict=True):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_serve, args=(child, kind, model, options, cores, gpu, os.getpid())
            )
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        self._finalizer = weakref.finalize(self, _stop, self._procs, self._conns)
        self.cores = [self._receive(i) for i in range(replicas)]  # they load side by side

    def _receive(self, i: int):
        try:
            status, payload = self._conns[i].recv()
        except (EOFError, OSError):
            self.close()
            raise RuntimeError(
                f"replica {i} died (exit code {self._procs[i].exitcode}); see its log above"
            ) from None
        if status == "error":
            self.close()
            raise RuntimeError(f"replica {i} failed:\n{payload}")
        return payload

    def render(self, problem: str, template: str) -> str:
        return render_prompt(self.tokenizer, problem, template)

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        if not requests:
            return []
        shards = deal(requests, len(self._conns))
        busy = [i for i, idx in enumerate(shards) if idx]
        for i in busy:  # all copies work at once
            self._conns[i].send(([requests[j] for j in shards[i]], params))
        results = [self._receive(i) for i in busy]
        return gather(len(requests), [shards[i] for i in busy], results)

    def close(self) -> None:
        self._finalizer()


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a CPU-only torch build
        return 0
