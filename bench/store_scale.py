"""Trace store at scale: insert N synthetic traces, time three typical queries,
and compare the store's size with the same rows written as JSONL.

    python bench/store_scale.py                # 1,000,000 traces (about 3 GB of text)
    python bench/store_scale.py --rows 100000  # a quick look

Completions are 2-4 KB of step-by-step arithmetic prose, each one a unique
draw of sentences from a pool of 200k, so neither the store nor JSONL can
profit from whole-row repeats. 64 samples per problem, as in DART-style runs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.keys import params_key
from pipeline.rows import problem_key, trace_key
from pipeline.store import Store

SAMPLES_PER_PROBLEM = 64
MODELS = ["qwen2.5-math-1.5b-instruct", "deepseek-r1-distill-qwen-7b", "toy-teacher"]
TEMPLATES = [
    "First, we compute {a} + {b} = {c}.",
    "Next, multiply {a} by {b} to get {c}.",
    "Subtracting {b} from {a} gives {c}, so we carry {d} forward.",
    "Let $x$ be the number of apples. Then $x + {a} = {c}$, so $x = {d}$.",
    "We know that $\\frac{{{a}}}{{{b}}} = {e}$, hence the ratio is {e}.",
    "Wait, let me double-check: {a} \\times {b} = {c}, not {d}.",
    "Hmm, that does not look right. Let's reconsider the step with {a}.",
    "Step {f}: the area is ${a} \\cdot {b} = {c}$ square units.",
    "Since the sum of the angles is $180^\\circ$, the remaining angle is ${d}^\\circ$.",
    "Therefore the total cost is \\${c}, and each of the {f} friends pays \\${e}.",
    "Squaring both sides, we get $x^2 = {c}$, so $x = \\pm\\sqrt{{{c}}}$.",
    "By the Pythagorean theorem, $a^2 + b^2 = {a}^2 + {b}^2 = {c}$.",
    "Dividing both sides by {b}, we find $y = {e}$.",
    "So after {f} days she has {c} - {a} = {d} left.",
    "The probability is $\\dfrac{{{a}}}{{{c}}}$, which simplifies to {e}.",
    "Alternatively, notice that {a} is divisible by {f}, which gives {d}.",
]


def sentence_pool(n: int, rng: random.Random) -> list[str]:
    pool = []
    for _ in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        pool.append(
            rng.choice(TEMPLATES).format(
                a=a,
                b=b,
                c=a * b if rng.random() < 0.5 else a + b,
                d=abs(a - b),
                e=round(a / b, 3),
                f=rng.randint(2, 12),
            )
        )
    return pool


def make_batch(
    start: int, n: int, pool: list[str], np_rng: np.random.Generator, run_id: str
) -> pl.DataFrame:
    lengths = np_rng.integers(2000, 4000, size=n)
    mean_sentence = sum(map(len, pool[:1000])) / 1000 + 2
    counts = np.maximum(1, (lengths / mean_sentence).astype(int))
    picks = np_rng.integers(0, len(pool), size=int(counts.sum()))
    completions, pos = [], 0
    for c in counts:
        body = "\n\n".join(pool[i] for i in picks[pos : pos + c])
        pos += c
        completions.append(f"{body}\n\nThe answer is $\\boxed{{{picks[pos - 1] % 1000}}}$.")
    rows = {
        k: []
        for k in (
            "trace_id",
            "problem_id",
            "model",
            "params_id",
            "params",
            "sample_index",
            "prompt",
            "completion",
            "finish_reason",
            "prompt_tokens",
            "completion_tokens",
            "latency_s",
            "origin",
            "run_id",
        )
    }
    for j, completion in enumerate(completions):
        i = start + j
        p = i // SAMPLES_PER_PROBLEM
        model = MODELS[p % len(MODELS)]
        params = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 4096, "seed": i}
        problem = f"Problem {p}: A baker makes {p % 97 + 3} trays of {p % 13 + 4} cookies. How many cookies?"
        pid = problem_key(problem, str((p % 97 + 3) * (p % 13 + 4)))
        rows["trace_id"].append(trace_key(pid, model, params, i % SAMPLES_PER_PROBLEM))
        rows["problem_id"].append(pid)
        rows["model"].append(model)
        rows["params_id"].append(params_key({k: v for k, v in params.items() if k != "seed"}))
        rows["params"].append(json.dumps(params))
        rows["sample_index"].append(i % SAMPLES_PER_PROBLEM)
        rows["prompt"].append(
            f"<|user|>\n{problem}\nPlease reason step by step, and put your final answer "
            "within \\boxed{}.\n<|assistant|>\n"
        )
        rows["completion"].append(completion)
        rows["finish_reason"].append("length" if len(completion) > 3950 else "stop")
        rows["prompt_tokens"].append(len(problem) // 4 + 20)
        rows["completion_tokens"].append(len(completion) // 4)
        rows["latency_s"].append(round(len(completion) / 2000, 3))
        rows["origin"].append("sampled")
        rows["run_id"].append(run_id)
    return pl.DataFrame(rows)


def verdicts_for(traces: pl.DataFrame, np_rng: np.random.Generator) -> pl.DataFrame:
    status = np.where(np_rng.random(traces.height) < 0.6, "correct", "wrong")
    return pl.DataFrame(
        {
            "verdict_id": traces["trace_id"] + "-mv0.9",
            "trace_id": traces["trace_id"],
            "verifier": "math-verify 0.9",
            "status": status,
            "extracted": "42",
            "seconds": 0.01,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--batch", type=int, default=245_760, help="rows per insert call (two DuckDB row groups)"
    )
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the store and JSONL afterwards")
    ap.add_argument("--json", type=Path, default=Path("bench/out/store_scale.json"))
    args = ap.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="pitfall-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db, jsonl = work / "bench.duckdb", work / "traces.jsonl"
    for f in (db, jsonl, db.with_name(db.name + ".wal")):
        f.unlink(missing_ok=True)

    rng, np_rng = random.Random(0), np.random.default_rng(0)
    pool = sentence_pool(200_000, rng)
    gen_s = insert_s = jsonl_s = verdict_s = 0.0
    store = Store.writer(db, command="bench store_scale", batch_rows=args.batch)
    with jsonl.open("wb") as jf:
        for start in range(0, args.rows, args.batch):
            n = min(args.batch, args.rows - start)
            t = time.perf_counter()
            batch = make_batch(start, n, pool, np_rng, store.run_id)
            gen_s += time.perf_counter() - t

            t = time.perf_counter()
            res = store.insert_new("traces", batch)
            insert_s += time.perf_counter() - t
            assert res.inserted == n, res

            t = time.perf_counter()
            batch.write_ndjson(jf)
            jsonl_s += time.perf_counter() - t

            t = time.perf_counter()
            store.insert_new("verdicts", verdicts_for(batch, np_rng))
            verdict_s += time.perf_counter() - t
            print(
                f"\r{start + n:>9,} traces  insert {(start + n) / insert_s:,.0f} rows/s",
                end="",
                flush=True,
            )
    print()
    # a second pass over a slice: every key already there, nothing written
    repeat = make_batch(0, min(args.batch, args.rows), pool, np.random.default_rng(0), store.run_id)
    t = time.perf_counter()
    again = store.insert_new("traces", repeat)
    rerun_s = time.perf_counter() - t
    assert again.inserted == 0 and again.skipped == min(args.batch, args.rows)
    store.close()

    reader = Store.reader(db)
    queries = {}
    for name in ("pass_rate_per_problem", "traces_per_model", "length_percentiles"):
        reader.canned(name)  # warm the OS cache once; report the second run
        t = time.perf_counter()
        out = reader.canned(name)
        queries[name] = {"seconds": round(time.perf_counter() - t, 3), "rows": out.height}

    db_bytes = db.stat().st_size + (
        db.with_name(db.name + ".wal").stat().st_size
        if db.with_name(db.name + ".wal").exists()
        else 0
    )
    # the verdicts live in the same file; count their share out of "bytes per trace"
    jsonl_bytes = jsonl.stat().st_size
    result = {
        "rows": args.rows,
        "batch_rows": args.batch,
        "insert_rows_per_s": round(args.rows / insert_s),
        "insert_s": round(insert_s, 1),
        "rerun_skip_rows_per_s": round(min(args.batch, args.rows) / rerun_s),
        "jsonl_write_rows_per_s": round(args.rows / jsonl_s),
        "generate_s": round(gen_s, 1),
        "verdict_insert_s": round(verdict_s, 1),
        "queries": queries,
        "store_bytes_total": db_bytes,
        "store_bytes_per_trace_incl_verdict": round(db_bytes / args.rows),
        "jsonl_bytes_per_trace": round(jsonl_bytes / args.rows),
        "store_over_jsonl": round(db_bytes / jsonl_bytes, 3),
    }
    print(json.dumps(result, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep and args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
