"""Peak memory of `pitfall ingest` on JSONL files of growing size.

    python bench/ingest_memory.py [--repo CHECKOUT] [--mb 70 210]

Writes one JSONL file per size (problems of ~1 KB of random words, a numeric
answer each, every problem distinct), ingests it into a new store with the
`pitfall` command of CHECKOUT (default: this one) and prints the process's
peak resident memory and wall time. A streaming ingest stays flat as the file
grows; one that reads the whole file grows with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PITFALL = Path(sys.executable).with_name("pitfall")
WORDS = ["x", "y", "+", "=", "alpha", "beta", "gamma", "delta"]


def write_jsonl(path: Path, mb: int) -> int:
    rng = random.Random(mb)
    rows = 0
    with path.open("w") as f:
        while f.tell() < mb * 1_000_000:
            words = " ".join(rng.choices(WORDS, k=180))
            f.write(json.dumps({"problem": f"Problem {rows}: {words}", "answer": str(rows)}) + "\n")
            rows += 1
    return rows


def ingest(repo: Path, src: Path, store: Path) -> tuple[int, float]:
    """Peak RSS in MB and seconds of one `pitfall ingest` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITFALL_")}
    env["PYTHONPATH"] = str(repo)  # ahead of the editable install: that checkout's code
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(PITFALL), "--store", str(store), "ingest", str(src)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status:
        raise SystemExit(f"ingest failed ({status}): {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss >> 10, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--mb", type=int, nargs="+", default=[70, 210])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mb in a.mb:
            src = Path(tmp) / f"problems-{mb}.jsonl"
            rows = write_jsonl(src, mb)
            peak, seconds = ingest(a.repo.resolve(), src, Path(tmp) / f"store-{mb}.duckdb")
            print(
                f"{a.repo}  {mb} MB ({rows:,} rows)  peak RSS {peak} MB  {seconds:.1f} s",
                flush=True,
            )
            src.unlink()


if __name__ == "__main__":
    main()
