"""Verification on Ray gives the local pool's verdicts: the budget is CPU time from
when a worker begins an item, so a busy machine changes no verdict, and a check
stuck in C code is a timeout, not a hang."""

from __future__ import annotations

import pytest

from pipeline.answer_check import Check
from tests.load import busy
from tests.test_verify_pool import TOWER, mixed_batch

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray instance, busy loops


@pytest.fixture(scope="module")
def pool():
    from pipeline.ray_exec import RayVerifyPool

    # one CPU: tasks queue behind each other, as they do behind a vLLM actor
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield RayVerifyPool("auto", timeout_s=1.0)
    finally:
        ray.shutdown(wait_for_processes=True)


def test_a_busy_machine_changes_no_verdict_on_ray(pool):
    """With the wall clock from submission as the budget (before), worker start-up
    and queueing counted against the items and they came back ``timeout``."""
    checks = mixed_batch()
    with busy(per_core=2):
        loaded = [o.status for o in pool.run(checks)]
    assert loaded.count("wrong") == 5
    assert loaded.count("correct") == len(checks) - 5


def test_a_check_stuck_in_c_code_is_a_timeout_on_ray(pool):
    tower, after = pool.run([Check("2", TOWER), Check("3", "3")])
    assert tower.status == "timeout", tower
    # its CPU budget ended it (SIGPROF or the kernel's CPU limit), not the wall-clock
    # stall limit, which is minutes long and would say "stalled"
    assert "stalled" not in (tower.detail or ""), tower
    assert after.status == "correct"
