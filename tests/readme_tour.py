"""Run README.md's tour literally, on a fresh clone with a fresh store.

    python tests/readme_tour.py                # a clone of HEAD in a temporary folder, its own .venv
    python tests/readme_tour.py --reuse-venv   # link this checkout's .venv instead of building one

Takes the shell block under README's "A tour, from a fresh clone" line and runs
its commands one by one in the clone (bash, comments stripped, a fresh
PREFECT_HOME), printing each one's exit code and seconds. Exits 1 at the
first command that fails. Too long for the test suite (the tour curates 300
problems and trains twice); run it before changing the tour or what it calls.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "A tour, from a fresh clone"


def tour_commands(readme: str) -> list[str]:
    after = readme[readme.index(MARKER) :]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    if block is None:
        raise SystemExit(f"README.md: no ```sh block after {MARKER!r}")
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reuse-venv", action="store_true", help="link this checkout's .venv")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = ap.parse_args()
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    work = Path(tempfile.mkdtemp(prefix="pitfall-tour-"))
    clone = work / "pitfall"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    if args.reuse_venv:
        (clone / ".venv").symlink_to(REPO / ".venv")
        (REPO / ".venv" / ".installed-run").touch()  # newer than the clone's pyproject.toml
        plan = subprocess.run(["make", "-n", "run"], cwd=clone, capture_output=True, text=True)
        if "pip install" in plan.stdout:  # it would point this checkout's install at the clone
            raise SystemExit("--reuse-venv: make would reinstall into the shared .venv; not run")
    env = os.environ | {"PREFECT_HOME": str(work / "prefect")}
    env = {k: v for k, v in env.items() if not k.startswith("PITFALL_")}
    print(f"tour in {clone}: {len(commands)} commands", flush=True)
    failed = 0
    for command in commands:
        start = time.monotonic()
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env)
        print(f"rc={done.returncode} {time.monotonic() - start:7.1f} s  {command}", flush=True)
        if done.returncode != 0:
            failed = 1
            break
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return failed


if __name__ == "__main__":
    sys.exit(main())
