"""Any OpenAI-compatible server (vLLM serve, SGLang, hosted APIs), completions or chat.

One call per sample (``n=1``, seed + j), so the server reports exact token
counts for each. Every call of every request is in flight at once, bounded by
one semaphore of ``concurrency``: 12 one-sample requests against a server that
takes 0.3 s each finish in ~0.6 s at concurrency 8, where one request at a time
took 3.6 s (tests/test_openai_backend.py).

Each call has one deadline, ``timeout_s``, for all its attempts and the backoff
between them (1 s, doubling); an attempt gets the time that is left. Failures
are told apart by who can fix them:

- **the request**: HTTP 4xx other than 401/403/404/408/409/429 (a prompt over
  the context length, a parameter the server refuses), or an answer that is
  still unusable after the retries (not JSON, an HTML page, no choices, text
  null). The request comes back as :class:`Failed` with the reason, and none
  of its samples are kept, so its sample indices stay free for a later run.
- **the server**: no connection, no answer by the deadline, 5xx, 408/409/429
  through every retry, or 401/403/404 (the key, the model or the URL is wrong
  for every request alike). Nothing more is sent; :class:`ServerUnavailable`
  carries what finished, with a message naming the server, credentials hidden.

The API key is read from the environment variable named by ``api_key_env`` and
is never logged or stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from pipeline.config import TeacherSettings, redact
from pipeline.sampling import (
    BOXED_INSTRUCTION,
    Completion,
    Failed,
    GenerationFailed,
    Request,
    SamplingParams,
    ServerUnavailable,
)

_T = TeacherSettings()  # the defaults live in the settings, declared once
BACKOFF_S = 1.0  # the first retry's wait; each further one doubles it
RETRY_STATUS = {408, 409, 429}  # and every 5xx: the same call may pass later
SERVER_STATUS = {401, 403, 404}  # the key, the model or the URL: every request fails alike


class _Invalid(Exception):
    """An answer that is not an OpenAI completion."""


class _Unusable(Exception):
    """The server cannot be used (message: what happened)."""


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str = _T.base_url,
        api_key_env: str = _T.api_key_env,
        endpoint: str = _T.endpoint,
        concurrency: int = _T.concurrency,
        retries: int = _T.retries,
        timeout_s: float = _T.timeout_s,
        backoff_s: float = BACKOFF_S,
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
        self.backoff_s = backoff_s
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
        """``n`` completions per request; raises :class:`GenerationFailed` when a
        request failed and :class:`ServerUnavailable` when the server did, both
        carrying every request's outcome (None: never finished)."""
        results, unusable = asyncio.run(self._all(requests, params))
        if unusable is not None:
            done = sum(isinstance(r, list) for r in results)
            raise ServerUnavailable(
                redact(
                    f"openai server {self.base_url}: {unusable}"
                    f" ({done} of {len(requests)} requests had finished)"
                ),
                results,
            )
        failed = [r for r in results if isinstance(r, Failed)]
        if failed:
            raise GenerationFailed(
                f"{len(failed)} of {len(requests)} requests failed, first: {failed[0].reason}",
                results,
            )
        return results

    async def _all(
        self, requests: list[Request], params: SamplingParams
    ) -> tuple[list[list[Completion] | Failed | None], str | None]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "EMPTY",
            max_retries=0,  # retried below, within our deadline
            timeout=self.timeout_s,
        )
        gate = asyncio.Semaphore(self.concurrency)
        samples: list[list[Completion | None]] = [[None] * r.n for r in requests]
        failed: dict[int, str] = {}

        async def one(i: int, j: int) -> None:
            # a call keeps its slot through its backoff: a struggling server gets fewer calls
            async with gate:
                if i in failed:  # its samples would be dropped anyway
                    return
                got = await self._call(client, requests[i].prompt, requests[i].seed + j, params)
            if isinstance(got, Failed):
                failed.setdefault(i, got.reason)
            else:
                samples[i][j] = got

        unusable = None
        try:
            async with asyncio.TaskGroup() as group:  # the first _Unusable cancels the rest
                for i, r in enumerate(requests):
                    for j in range(r.n):
                        group.create_task(one(i, j))
        except* _Unusable as errors:
            unusable = str(errors.exceptions[0])
        finally:
            await client.close()
        results: list[list[Completion] | Failed | None] = []
        for i, got in enumerate(samples):
            if i in failed:
                results.append(Failed(failed[i]))
            elif all(c is not None for c in got):
                results.append(got)  # type: ignore[arg-type]
            else:
                results.append(None)
        return results, unusable

    async def _call(self, client, prompt: str, seed: int, params: SamplingParams):
        """One sample: a Completion, a Failed request, or _Unusable raised."""
        import openai

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        delay = self.backoff_s
        invalid, problem = False, ""
        for attempt in range(self.retries + 1):
            left = deadline - loop.time()
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(left):
                    raw = await self._post(client, prompt, seed, params, left)
                return self._completion(raw.http_response, time.perf_counter() - t0)
            except _Invalid as exc:
                invalid, problem = True, f"invalid response: {exc}"
            except (TimeoutError, openai.APITimeoutError):
                invalid, problem = False, f"no answer within timeout_s = {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                invalid, problem = False, f"cannot connect ({exc.__cause__ or exc})"
            except openai.APIStatusError as exc:
                reason = f"HTTP {exc.status_code}: {_detail(exc)}"
                if exc.status_code in SERVER_STATUS:
                    raise _Unusable(reason) from None
                if exc.status_code < 500 and exc.status_code not in RETRY_STATUS:
                    return Failed(reason)
                invalid, problem = False, reason
            left = deadline - loop.time()
            if attempt == self.retries or left <= 0:
                break
            await asyncio.sleep(min(delay, left))
            delay *= 2
            if deadline - loop.time() <= 0:
                break
        if invalid:
            return Failed(problem)
        raise _Unusable(f"{problem}, after {attempt + 1} attempts")

    async def _post(self, client, prompt: str, seed: int, params: SamplingParams, timeout: float):
        common = {
            "model": self.model,
            "n": 1,
            "seed": seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "timeout": timeout,
        }
        # the raw response: its body is validated here, not trusted to the client's models
        if self.endpoint == "chat":
            return await client.chat.completions.with_raw_response.create(
                messages=[{"role": "user", "content": prompt}], **common
            )
        return await client.completions.with_raw_response.create(prompt=prompt, **common)

    def _completion(self, response, seconds: float) -> Completion:
        try:
            body = json.loads(response.content)
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise _Invalid(f"not JSON ({kind}, {len(response.content)} bytes)") from None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Invalid("no choices")
        choice = choices[0]
        finish = choice.get("finish_reason") or "stop"
        if self.endpoint == "chat":
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if text is None and finish == "length":
                text = ""  # a reasoning model cut off before its answer: a truncated sample
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            raise _Invalid(f"the completion text is {json.dumps(text)}")
        if not isinstance(finish, str):
            raise _Invalid(f"finish_reason is {json.dumps(finish)}")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_s=seconds,
        )


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _detail(exc) -> str:
    """The server's error message, short, with any credentials in it hidden."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = inner.get("message", inner) if isinstance(inner, dict) else inner
    text = " ".join(str(body if body is not None else exc.message).split())
    return redact(text if len(text) <= 200 else text[:199] + "…")
