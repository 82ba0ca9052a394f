"""Any OpenAI-compatible server (vLLM serve, SGLang, hosted APIs), completions or chat.

Bounded concurrency, retries with exponential backoff, a timeout per call. The
API key is read from the environment variable named by ``api_key_env`` and is
never logged or stored.
"""

from __future__ import annotations

import asyncio
import os
import time

from pipeline.sampling import BOXED_INSTRUCTION, Completion, Request, SamplingParams


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: str = "completions",  # or "chat"
        concurrency: int = 8,
        retries: int = 3,
        timeout_s: float = 300.0,
        **_ignored,
    ):
        if endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be completions or chat, not {endpoint!r}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s
        self._tokenizer = None

    def render(self, problem: str, template: str) -> str:
        """The completions endpoint gets the chat template applied here (from the
        model folder when it is local); the chat endpoint gets the user turn and
        the server applies its own template."""
        content = problem if template != "boxed" else f"{problem}\n{BOXED_INSTRUCTION}"
        if self.endpoint == "chat" or template == "raw":
            return content
        from pipeline.sampling import render_prompt

        return render_prompt(self._load_tokenizer(), problem, template)

    def _load_tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        return self._tokenizer

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        return asyncio.run(self._all(requests, params))

    async def _all(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "EMPTY",
            max_retries=0,  # retried below, with our backoff
            timeout=self.timeout_s,
        )
        gate = asyncio.Semaphore(self.concurrency)
        try:
            # one call per sample (n=1): the server then reports exact token counts for each
            calls = [
                [self._call(client, gate, r.prompt, r.seed + j, params) for j in range(r.n)]
                for r in requests
            ]
            return [list(await asyncio.gather(*per_request)) for per_request in calls]
        finally:
            await client.close()

    async def _call(
        self, client, gate, prompt: str, seed: int, params: SamplingParams
    ) -> Completion:
        import openai

        common = {
            "model": self.model,
            "n": 1,
            "seed": seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        delay = 1.0
        for attempt in range(self.retries + 1):
            async with gate:
                t0 = time.perf_counter()
                try:
                    if self.endpoint == "chat":
                        resp = await client.chat.completions.create(
                            messages=[{"role": "user", "content": prompt}], **common
                        )
                        text = resp.choices[0].message.content or ""
                    else:
                        resp = await client.completions.create(prompt=prompt, **common)
                        text = resp.choices[0].text
                    seconds = time.perf_counter() - t0
                    break
                except (
                    openai.APIConnectionError,
                    openai.APITimeoutError,
                    openai.RateLimitError,
                    openai.InternalServerError,
                ):
                    if attempt == self.retries:
                        raise
            await asyncio.sleep(delay)
            delay *= 2
        usage = resp.usage
        return Completion(
            text=text,
            finish_reason=resp.choices[0].finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_s=seconds,
        )
