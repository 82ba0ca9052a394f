"""Model copies in worker processes (``[teacher] replicas``), on the toy teacher.

Real processes, real engines: each copy is pinned to its own core and serves
its round-robin share of the requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from pipeline.backends import make_backend
from pipeline.backends.hf_backend import TransformersBackend
from pipeline.backends.replicas import deal, gather, split_cores
from pipeline.sampling import Request
from tests import leftovers
from tests.conftest import REPO, TEACHER
from tests.test_sampling import PARAMS, check_backend, rows_of

pytestmark = pytest.mark.slow  # model copies in worker processes

CORES = sorted(os.sched_getaffinity(0))
two_cores = pytest.mark.skipif(len(CORES) < 2, reason="replicas need a core each")


def texts(results):
    return [[c.text for c in cs] for cs in results]


def test_cores_are_split_into_disjoint_slices():
    assert split_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert split_cores([2, 5], 2) == [[2], [5]]
    with pytest.raises(ValueError, match="3 replicas need at least 3 cores"):
        split_cores([0, 1], 3)


def test_deal_and_gather_keep_the_request_order():
    requests = list("abcdefg")
    shards = deal(requests, 3)
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    served = [[requests[j].upper() for j in idx] for idx in shards]
    assert gather(len(requests), shards, served) == list("ABCDEFG")


@two_cores
def test_transformers_replicas_return_what_one_copy_returns():
    one = TransformersBackend(str(TEACHER), batch_size=4)
    two = make_backend("transformers", str(TEACHER), replicas=2, batch_size=4)
    try:
        assert [c for cores in two.cores for c in cores] == CORES  # each copy its own cores
        assert len(two.cores) == 2 and not set(two.cores[0]) & set(two.cores[1])
        rows = rows_of("ops5-v99", 5)
        requests = [
            Request(one.render(r["problem"], "chat"), 2, 40 + i) for i, r in enumerate(rows)
        ]
        assert [two.render(r["problem"], "chat") for r in rows] == [q.prompt for q in requests]
        # every request carries its seed: which copy serves it changes nothing
        assert texts(two.generate(requests, PARAMS)) == texts(one.generate(requests, PARAMS))
        assert two.generate([], PARAMS) == []
        check_backend(two)
    finally:
        two.close()
    assert not any(p.is_alive() for p in two._procs)


@two_cores
def test_vllm_replicas_sample_on_their_own_cores():
    two = make_backend(
        "vllm", str(TEACHER), replicas=2, gpu_memory_utilization=0.05, max_model_len=512
    )
    try:
        assert len(two.cores) == 2 and not set(two.cores[0]) & set(two.cores[1])
        check_backend(two, n_problems=4)
    finally:
        two.close()
    assert not any(p.is_alive() for p in two._procs)


@two_cores
def test_a_copy_that_cannot_start_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken"  # the tokenizer loads, the weights do not
    shutil.copytree(TEACHER, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(RuntimeError, match=r"replica 0 failed:\n(.|\n)*safetensors"):
        make_backend("transformers", str(broken), replicas=2)


def test_replicas_are_not_for_a_server():
    with pytest.raises(ValueError, match="raise `concurrency`"):
        make_backend("openai", "toy", replicas=2)


@two_cores
def test_copies_die_with_a_killed_parent(tmp_path):
    """A copy busy generating would not notice its parent's SIGKILL until it
    tried to answer, minutes later on a long batch: the kernel stops it now."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys, threading, time
            from pipeline.backends import make_backend
            from pipeline.sampling import Request, SamplingParams

            if __name__ == "__main__":
                b = make_backend("transformers", {str(TEACHER)!r}, replicas=2, batch_size=4)
                print("pids", *[p.pid for p in b._procs], flush=True)
                threading.Timer(5.0, os.kill, (os.getpid(), signal.SIGKILL)).start()
                prompt = b.render("Start with 7. Multiply by 3. Add 2. What is the result?", "chat")
                b.generate([Request(prompt, 8, i) for i in range(200)], SamplingParams(max_tokens=512))
            """
        )
    )
    log = tmp_path / "out.txt"
    with log.open("w") as fh:  # not a pipe: the copies would hold it open and make us wait
        done = subprocess.run(
            [sys.executable, str(script)],
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    out = log.read_text()
    assert done.returncode == -signal.SIGKILL, out[-2000:]
    copies = [int(p) for p in out.split("pids", 1)[1].split("\n", 1)[0].split()]
    # they go on their own (parent-death watch), if slowly on a busy machine: at a load
    # of 17 on 2 cores a copy is scheduled too seldom to notice within 3 s
    left = leftovers.settle(lambda: [p for p in copies if leftovers.alive(p)])
    assert left == [], "copies still generating for a dead parent"
