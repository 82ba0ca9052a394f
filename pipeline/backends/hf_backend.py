"""transformers ``generate``: the fallback backend, batched with left padding."""

from __future__ import annotations

import time

import torch

from pipeline.backends.stream import BatchStream
from pipeline.config import TeacherSettings
from pipeline.sampling import Completion, Request, SamplingParams, render_prompt

_T = TeacherSettings()  # the defaults live in the settings, declared once


class TransformersBackend:
    def __init__(self, model: str, *, batch_size: int = _T.batch_size):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(model)
        self.lm.eval()
        self.batch_size = batch_size

    def render(self, problem: str, template: str) -> str:
        return render_prompt(self.tokenizer, problem, template)

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        return [self._one(r, params) for r in requests]

    def stream(self, params: SamplingParams) -> BatchStream:
        """One request per poll: the same samples as ``generate``, each handed back
        as soon as it is done."""
        return BatchStream(self, params, per_poll=1)

    @torch.no_grad()
    def _one(self, request: Request, params: SamplingParams) -> list[Completion]:
        # one request at a time, its n samples as one batch: the request's seed
        # then fixes its samples whatever else is being sampled
        enc = self.tokenizer([request.prompt], return_tensors="pt", add_special_tokens=False)
        prompt_len = enc["input_ids"].shape[1]
        out: list[Completion] = []
        for start in range(0, request.n, self.batch_size):
            k = min(self.batch_size, request.n - start)
            torch.manual_seed(request.seed + start)
            t0 = time.perf_counter()
            gen = self.lm.generate(
                **enc,
                do_sample=params.temperature > 0,
                temperature=params.temperature if params.temperature > 0 else None,
                top_p=params.top_p,
                top_k=0,
                max_new_tokens=params.max_tokens,
                num_return_sequences=k,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            seconds = time.perf_counter() - t0
            eos = self.tokenizer.eos_token_id
            for row in gen[:, prompt_len:]:
                ids = row.tolist()
                stopped = eos in ids
                ids = (
                    ids[: ids.index(eos)]
                    if stopped
                    else [t for t in ids if t != self.tokenizer.pad_token_id]
                )
                out.append(
                    Completion(
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        finish_reason="stop" if stopped else "length",
                        prompt_tokens=prompt_len,
                        completion_tokens=len(ids) + (1 if stopped else 0),
                        latency_s=seconds,
                    )
                )
        return out
