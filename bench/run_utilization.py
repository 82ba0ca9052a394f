"""How much of the engine's capacity the default run's stages use (issue 17).

    python bench/run_utilization.py            # steady state, then `pitfall run` on a fresh store
    python bench/run_utilization.py --json F   # also write the figures to F

Absolute times differ between machines; this ratio does not. In one session:

1. The engine's steady state: a fresh process builds the teacher's backend as
   `pitfall run` does ([teacher] settings) and generates a saturated batch --
   the first 256 curation problems x 8 samples (2,048 sequences, 8x vLLM's
   256 running at once) at the run's sampling parameters -- after a warm-up;
   completion tokens/s of the median of three passes.
2. The default run: `pitfall run --profile` on a fresh store (the shipped
   settings otherwise), in its own process.
3. Per stage that generates (sample, localize): its completion tokens/s over
   its wall time as a share of the steady state, and where the time went
   (the stage's ``detail["profile"]``: engine start, generate calls with their
   sizes, verifier start, verification, store, the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if Path(sys.path[0]).resolve() == REPO / "bench":  # run as a script: keep imports at the repo
    sys.path[0] = str(REPO)
WORK = REPO / "bench" / "out" / "run_utilization"
PROBLEMS, SAMPLES = 256, 8


def steady_state() -> dict:
    """Tokens/s of the teacher's backend on a saturated batch (run in a fresh process)."""
    from pipeline.backends import backend_options, make_backend
    from pipeline.config import load_settings
    from pipeline.sampling import Request, SamplingParams, request_seed

    settings = load_settings()
    t = settings.teacher
    params = SamplingParams.from_settings(t)
    started = time.perf_counter()
    backend = make_backend(t.backend, t.model, **backend_options(t.backend, t))
    start_s = time.perf_counter() - started
    rows = [json.loads(x) for x in Path(settings.run.inputs[0]).read_text().splitlines()]
    requests = [
        Request(
            backend.render(r["problem"], params.template),
            SAMPLES,
            request_seed(params.seed, str(i), 0),
        )
        for i, r in enumerate(rows[:PROBLEMS])
    ]
    backend.generate(requests[:8], params)  # warm-up
    passes = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = backend.generate(requests, params)
        seconds = time.perf_counter() - t0
        passes.append((sum(c.completion_tokens for cs in out for c in cs) / seconds, seconds))
    rate, seconds = sorted(passes)[1]
    return {
        "engine": t.backend,
        "sequences": PROBLEMS * SAMPLES,
        "engine_start_s": round(start_s, 1),
        "seconds": round(seconds, 1),
        "tokens_per_s": round(rate),
        "passes_tokens_per_s": [round(p[0]) for p in passes],
    }


def default_run(work: Path) -> tuple[dict, float]:
    """The default `pitfall run` on a fresh store under ``work``: its stages and wall time."""
    from pipeline.store import Store

    shutil.rmtree(work / "store", ignore_errors=True)
    shutil.rmtree(work / "export", ignore_errors=True)
    store = work / "store" / "pitfall.duckdb"
    env = os.environ | {
        "PITFALL_STORE__PATH": str(store),
        "PITFALL_EXPORT__DIR": str(work / "export"),
    }
    t0 = time.perf_counter()
    with (work / "run.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "--profile"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    with Store.reader(store) as s:
        summary = s.query(
            "SELECT summary FROM runs WHERE command = 'run' ORDER BY started_at DESC LIMIT 1"
        ).item()
    return json.loads(summary), wall


def rows(stages: list[dict], steady: float) -> list[dict]:
    out = []
    for s in stages:
        if not s["tokens"]:
            continue
        prof = s["detail"]["profile"]
        calls = prof.get("generate calls", {})
        rate = s["tokens"] / s["seconds"]
        out.append(
            {
                "stage": s["stage"],
                "seconds": s["seconds"],
                "tokens": s["tokens"],
                "tokens_per_s": round(rate),
                "share": round(rate / steady, 3),
                "inside_generate_share": round((calls.get("tokens/s") or 0) / steady, 3),
                "parts": prof["seconds"],
                "calls": calls,
            }
        )
    return out


def markdown(result: dict) -> str:
    st = result["steady"]
    lines = [
        f"Engine steady state: **{st['tokens_per_s']:,} tokens/s** ({st['sequences']:,}"
        f" sequences in {st['seconds']} s; passes {st['passes_tokens_per_s']});"
        f" `pitfall run` took {result['run_wall_s']:.0f} s.",
        "",
        "| stage | s | tokens | tokens/s | **of steady state** | inside generate calls"
        " | engine start | generate | verifier start | verify | store | other"
        " | verify beside generation | calls | sequences per call (min / median / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["stages"]:
        p, c = r["parts"], r["calls"]
        shape = f"{c['min']} / {c['median']:g} / {c['max']}" if c else ""
        lines.append(
            f"| {r['stage']} | {r['seconds']:.1f} | {r['tokens']:,} | {r['tokens_per_s']:,}"
            f" | **{r['share']:.0%}** | {r['inside_generate_share']:.0%}"
            f" | {p['engine start']:.1f} | {p['generate']:.1f} | {p['verifier start']:.1f}"
            f" | {p['verify']:.1f} | {p['store']:.1f} | {p['other']:.1f}"
            f" | {p.get('verify beside generation', 0):.1f} | {c.get('calls', 0):,} | {shape} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--steady-state", action="store_true", help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    if args.steady_state:
        print(json.dumps(steady_state()))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    print("steady state ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--steady-state"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    steady = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {steady['tokens_per_s']:,} tokens/s; the default run ...", file=sys.stderr)
    summary, wall = default_run(WORK)
    result = {
        "steady": steady,
        "run_wall_s": round(wall, 1),
        "stages": rows(summary["stages"], steady["tokens_per_s"]),
        "all_stages_s": {s["stage"]: s["seconds"] for s in summary["stages"]},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(f"\nstages: {result['all_stages_s']}")


if __name__ == "__main__":
    main()
