"""First-error localization on the toy world, scored against the exact step checker.

    python bench/localize.py [--per-level 50] [--samples 4] [--k 8]

Teacher traces for the toy test problems of levels ops3, ops4, ops5 and ops8
(vLLM, T=1), verified, segmented (min_chars 0, so step indices are the
checker's paragraphs), then localized by mc-binary, mc-binary-confirmed,
mc-linear, judge (the toy teacher as critic, ProcessBench prompt, majority of
4) and consensus (mc-binary + judge), all with the toy teacher as rollout
policy. Reports ProcessBench F1 (harmonic mean of exact-index accuracy on
wrong traces and accuracy on all-correct ones) with rollouts and rollout
tokens per trace (those each label rests on, reused or not), on all traces
and on traces with >= 6 steps, and the ratios to mc-linear. The store is left in bench/out/localize.duckdb for SQL.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from pipeline.config import load_settings
from pipeline.ingest import column_map, to_problems
from pipeline.metrics import processbench_f1
from pipeline.readers import Record
from pipeline.stages import StageContext
from pipeline.stages import sample as sample_stage
from pipeline.stages import segment as segment_stage
from pipeline.stages.localize import localize
from pipeline.store import Store
from pipeline.toy.checker import first_error

REPO = Path(__file__).resolve().parent.parent
TEACHER = str(REPO / "data" / "models" / "toy-teacher")
LEVELS = ("ops3-v99", "ops4-v99", "ops5-v99", "ops8-v199")
LONG = 6  # steps
MONTE_CARLO = ("mc-binary", "mc-binary-confirmed", "mc-linear")  # each reuses the ones before


def build_store(path: Path, settings, backend, per_level: int) -> None:
    rows = [json.loads(x) for x in (REPO / "data/toy/test.jsonl").read_text().splitlines()]
    picked = [r for lv in LEVELS for r in [r for r in rows if r["level"] == lv][:per_level]]
    problems, _ = to_problems(
        [Record(str(i), r) for i, r in enumerate(picked)], "toy/test", column_map()
    )
    with (
        Store.writer(path, command="bench-localize") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        store.insert_new("problems", problems)
        sample_stage.run(ctx)
        segment_stage.run(ctx)


def scored(path: Path, method: str) -> pl.DataFrame:
    with Store.reader(path) as store:
        frame = store.query(
            """
            SELECT t.trace_id, p.problem, t.completion, f.first_error, f.n_rollouts,
                   f.rollout_tokens, s.n_steps
            FROM first_errors f
            JOIN traces t USING (trace_id)
            JOIN problems p USING (problem_id)
            JOIN (SELECT trace_id, count(*) AS n_steps FROM steps GROUP BY 1) s USING (trace_id)
            WHERE f.method = ?
            """,
            [method],
        )
    truth = [first_error(p, c) for p, c in frame.select("problem", "completion").iter_rows()]
    return frame.with_columns(label=pl.Series(truth))


def summarize(frame: pl.DataFrame, subset: str) -> dict:
    score = processbench_f1(frame["label"].to_list(), frame["first_error"].to_list())
    wrong = frame.filter(pl.col("label") >= 0)
    return {
        "subset": subset,
        "traces": frame.height,
        "wrong": score.n_error,
        "acc_error": round(score.acc_error, 1),
        "acc_correct": round(score.acc_correct, 1),
        "f1": round(score.f1, 1),
        "rollouts_per_trace": round(frame["n_rollouts"].mean(), 2),
        "rollouts_per_wrong_trace": round(wrong["n_rollouts"].mean(), 2) if wrong.height else 0,
        "rollout_tokens_per_trace": round(frame["rollout_tokens"].mean(), 1),
        "undetermined": int(frame["first_error"].is_null().sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-level", type=int, default=50)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "localize.duckdb")
    args = ap.parse_args()

    from pipeline.backends.vllm_backend import VLLMBackend

    args.out.parent.mkdir(parents=True, exist_ok=True)
    for f in (args.out, Path(f"{args.out}.wal"), Path(f"{args.out}.lock")):
        f.unlink(missing_ok=True)
    settings = load_settings(
        None,
        {
            "store": {"path": args.out},
            "teacher": {"max_tokens": 200},
            "dart": {"strategy": "fixed", "n_fixed": args.samples, "round_size": args.samples},
            "segment": {"min_chars": 0},
            "localize": {"k": args.k, "max_tokens": 200, "judge_n": 4, "per_problem": 0},
        },
    )
    backend = VLLMBackend(TEACHER, gpu_memory_utilization=0.15, max_model_len=1024)
    t0 = time.perf_counter()
    build_store(args.out, settings, backend, args.per_level)
    timings = {"sample+verify+segment": round(time.perf_counter() - t0, 1)}
    with (
        Store.writer(args.out, command="bench-localize") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        for method in MONTE_CARLO:
            t = time.perf_counter()
            s = localize(ctx, method)
            timings[method] = round(time.perf_counter() - t, 1)
            timings[f"{method} rollouts generated"] = s.rollouts
        t = time.perf_counter()
        localize(ctx, "judge")
        timings["judge"] = round(time.perf_counter() - t, 1)
        localize(ctx, "consensus")

    rows = []
    for method in (*MONTE_CARLO, "judge", "consensus"):
        frame = scored(args.out, method)
        rows.append({"method": method, **summarize(frame, "all")})
        rows.append({"method": method, **summarize(frame.filter(pl.col("n_steps") >= LONG), ">=6")})
    table = pl.DataFrame(rows)
    long = table.filter(pl.col("subset") == ">=6")
    lin = long.filter(pl.col("method") == "mc-linear").row(0, named=True)
    ratios = {}
    for method in MONTE_CARLO[:-1]:
        m = long.filter(pl.col("method") == method).row(0, named=True)
        ratios[f"f1 {method} / mc-linear (>=6 steps)"] = (
            round(m["f1"] / lin["f1"], 3) if lin["f1"] else None
        )
        ratios[f"rollouts {method} / mc-linear (>=6 steps)"] = (
            round(m["rollouts_per_trace"] / lin["rollouts_per_trace"], 3)
            if lin["rollouts_per_trace"]
            else None
        )
    with pl.Config(tbl_rows=20, tbl_cols=20, tbl_width_chars=200):
        print(table)
    print(json.dumps({"timings_s": timings, **ratios}, indent=2))


if __name__ == "__main__":
    main()
