"""The Ray instance pitfall starts (`--ray auto` with no cluster running) runs its
workers at the driver's priority. Ray nices them to 15 by default: beside four
busy processes on 2 cores a model copy then got 2% of a core (2026-12-06).

Its own module: `connect("auto")` joins any Ray instance already running, so this
must run while no other test holds one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts a local Ray instance


def test_the_ray_instance_pitfall_starts_runs_its_workers_at_normal_priority():
    code = (
        "import os, ray\n"
        "from pipeline.ray_exec import connect, disconnect\n"
        "connect('auto')\n"
        "print('niceness', ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
        "disconnect()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"niceness {os.nice(0)}" in done.stdout
