"""Sampling backends: vLLM offline, an OpenAI-compatible server, transformers generate."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.backends.stream import Finished, Stream, open_stream
from pipeline.config import TeacherSettings
from pipeline.profile import Profile
from pipeline.sampling import Backend, Completion, Request, SamplingParams

# the [teacher] settings each kind of backend takes
OPTIONS = {
    "vllm": ("gpu_memory_utilization", "max_model_len", "dtype"),
    "transformers": ("batch_size",),
    "openai": ("base_url", "api_key_env", "endpoint", "concurrency", "retries", "timeout_s"),
}


def backend_options(kind: str, teacher: TeacherSettings) -> dict:
    """What a ``kind`` backend is built with, from ``[teacher]``: its own options and
    the number of copies."""
    if kind not in OPTIONS:
        raise ValueError(f"unknown backend {kind!r}; use {', '.join(OPTIONS)}")
    return {"replicas": teacher.replicas, **{k: getattr(teacher, k) for k in OPTIONS[kind]}}


def make_backend(kind: str, model: str, *, replicas: int = 1, **options) -> Backend:
    """The backend named in ``[teacher] backend``; heavy imports happen only here.

    ``replicas`` > 1 runs that many copies in worker processes, each on its own
    share of the CPU cores (or its own GPU), with requests dealt out between them.
    """
    if replicas > 1:
        from pipeline.backends.replicas import ReplicatedBackend

        return ReplicatedBackend(kind, model, replicas, options)
    if kind == "vllm":
        from pipeline.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    if kind == "transformers":
        from pipeline.backends.hf_backend import TransformersBackend

        return TransformersBackend(model, **options)
    if kind == "openai":
        from pipeline.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise ValueError(f"unknown backend {kind!r}; use vllm, openai or transformers")


def preload(kind: str, replicas: int = 1) -> None:
    """Import what building a ``kind`` backend in this process imports, without
    building it: vLLM's import is a quarter of its start. Copies in worker
    processes (``replicas`` > 1) import their own; the other kinds are light."""
    if kind == "vllm" and replicas == 1:
        from pipeline.backends.vllm_backend import import_vllm

        import_vllm()


class LazyBackend:
    """A backend that is built on first use: a run with nothing to sample or roll
    out never pays for loading a model (vLLM takes ~20 s even for a tiny one).
    With a ``profile`` it records its start and every generate call there."""

    def __init__(self, model: str, factory: Callable[[], Backend], profile: Profile | None = None):
        self.model = model  # known without loading: it goes into every key
        self._factory = factory
        self._backend: Backend | None = None
        self._profile = profile

    def _get(self) -> Backend:
        if self._backend is None:
            t0 = time.perf_counter()
            self._backend = self._factory()
            if self._profile is not None:
                self._profile.seconds["engine start"] += time.perf_counter() - t0
        return self._backend

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        if not requests:
            return []
        backend = self._get()  # a start is not a call's time
        t0, results = time.perf_counter(), []
        try:
            results = backend.generate(requests, params)
            return results
        finally:  # a failed call's time counts too
            if self._profile is not None:
                tokens = sum(c.completion_tokens or 0 for cs in results for c in cs)
                sequences = sum(r.n for r in requests)
                self._profile.generated(sequences, tokens, time.perf_counter() - t0)

    def stream(self, params: SamplingParams) -> Stream:
        """The backend's stream (see ``pipeline/backends/stream.py``), its polls profiled."""
        inner = open_stream(self._get(), params)
        return inner if self._profile is None else _ProfiledStream(inner, self._profile)

    def render(self, problem: str, template: str) -> str:
        return self._get().render(problem, template)


class _ProfiledStream:
    """Each poll counts as a generate call of the sequences in flight when it began."""

    def __init__(self, inner: Stream, profile: Profile):
        self._inner, self._profile = inner, profile

    def poll(self) -> list[Finished]:
        t0, in_flight, done = time.perf_counter(), self._inner.sequences, []
        try:
            done = self._inner.poll()
            return done
        finally:
            tokens = sum(
                c.completion_tokens or 0 for _, cs in done if isinstance(cs, list) for c in cs
            )
            self._profile.generated(in_flight, tokens, time.perf_counter() - t0)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)
