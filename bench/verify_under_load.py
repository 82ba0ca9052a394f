"""`pitfall verify` on a busy machine: verdicts and seconds, idle and under load.

    python bench/verify_under_load.py [--repo CHECKOUT] [--answers 20] [--loops 4]

Imports N trivially correct answers (``\\boxed{i}`` for gold ``i``) into a new
store, verifies them with the `pitfall` command of CHECKOUT (default: this
one), first on an otherwise idle machine, then with ``--loops`` shell loops
spinning on the cores (spread evenly over them), and prints the verdict counts
and the wall time of each. Pointing ``--repo`` at an older checkout gives the
before/after pair. Every verdict should be ``correct`` both times.
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

from pipeline.store import Store

REPO = Path(__file__).resolve().parent.parent
PITFALL = Path(sys.executable).with_name("pitfall")


def pitfall(repo: Path, store: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")}
    env["PYTHONPATH"] = str(repo)  # ahead of the editable install: that checkout's code
    t0 = time.perf_counter()
    subprocess.run(
        [str(PITFALL), "--store", str(store), *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def verdicts(store: Path) -> dict[str, int]:
    with Store.reader(store) as s:
        return dict(s.query("SELECT status, count(*) FROM verdicts GROUP BY 1 ORDER BY 1").rows())


def spin(loops: int) -> list[subprocess.Popen]:
    cores = sorted(os.sched_getaffinity(0))
    procs = []
    for i in range(loops):
        p = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        os.sched_setaffinity(p.pid, {cores[i % len(cores)]})
        procs.append(p)
    return procs


def one(repo: Path, answers: int, loops: int, work: Path) -> tuple[dict[str, int], float]:
    src = work / "answers.jsonl"
    src.write_text(
        "".join(
            json.dumps(
                {
                    "problem": f"Problem {i}: give {i}.",
                    "answer": str(i),
                    "generations": f"so \\boxed{{{i}}}",
                }
            )
            + "\n"
            for i in range(answers)
        )
    )
    store = work / f"store-{loops}.duckdb"
    pitfall(repo, store, "import-traces", str(src))
    load = spin(loops)
    try:
        seconds = pitfall(repo, store, "verify")
    finally:
        for p in load:
            p.kill()
            p.wait()
    return verdicts(store), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--answers", type=int, default=20)
    ap.add_argument("--loops", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for loops in (0, a.loops):
            got, seconds = one(a.repo.resolve(), a.answers, loops, Path(tmp))
            print(f"{a.repo}  loops={loops}  verdicts={got}  {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
