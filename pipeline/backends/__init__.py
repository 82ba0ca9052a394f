"""Sampling backends: vLLM offline, an OpenAI-compatible server, transformers generate."""

from __future__ import annotations

from pipeline.sampling import Backend


def make_backend(kind: str, model: str, **options) -> Backend:
    """The backend named in ``[teacher] backend``; heavy imports happen only here."""
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
