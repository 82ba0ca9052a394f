"""Sampling throughput on the toy teacher: the vLLM backend against transformers.

    python bench/sampling_throughput.py

Both backends get the same requests: 64 toy test problems (all levels), n=8
samples each at temperature 1.0, max_tokens 160, through pitfall's backend
classes, with their defaults (vLLM: dtype auto, i.e. bf16 on this CPU;
transformers: the checkpoint's fp32, one request's n samples per generate
call so that its seed fixes them). Completion tokens per second of wall
time, engine load excluded; the median of three passes after a warm-up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.sampling import Request, SamplingParams, request_seed

REPO = Path(__file__).resolve().parent.parent
TEACHER = str(REPO / "data" / "models" / "toy-teacher")
PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=160, seed=0, template="chat")


def requests(backend, n_problems: int = 64, n: int = 8) -> list[Request]:
    rows = [
        json.loads(line) for line in (REPO / "data" / "toy" / "test.jsonl").read_text().splitlines()
    ]
    rows = rows[:: max(1, len(rows) // n_problems)][:n_problems]
    return [
        Request(backend.render(r["problem"], "chat"), n, request_seed(0, r["problem"], 0))
        for r in rows
    ]


def measure(backend, repeats: int = 3) -> dict:
    """Median of ``repeats`` timed passes over the same requests, after a warm-up."""
    reqs = requests(backend)
    backend.generate(reqs[:2], PARAMS)  # warm-up
    passes = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = backend.generate(reqs, PARAMS)
        seconds = time.perf_counter() - t
        tokens = sum(c.completion_tokens for cs in out for c in cs)
        passes.append((tokens / seconds, seconds, tokens, sum(map(len, out))))
    rate, seconds, tokens, completions = sorted(passes)[len(passes) // 2]
    return {
        "seconds": round(seconds, 2),
        "completions": completions,
        "tokens": tokens,
        "tokens_per_s": round(rate, 1),
        "all_passes_tokens_per_s": [round(p[0], 1) for p in passes],
    }


def main() -> None:
    from pipeline.backends.hf_backend import TransformersBackend
    from pipeline.backends.vllm_backend import VLLMBackend

    # dtype "auto" as `pitfall sample` uses it: vLLM runs the fp32 checkpoint in bf16 on the CPU
    vllm = measure(
        VLLMBackend(TEACHER, gpu_memory_utilization=0.15, max_model_len=512, dtype="auto")
    )
    hf = measure(TransformersBackend(TEACHER, batch_size=32))
    print(
        json.dumps(
            {
                "vllm": vllm,
                "transformers": hf,
                "ratio": round(vllm["tokens_per_s"] / hf["tokens_per_s"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
