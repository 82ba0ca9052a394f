"""Process-reward-model localization (Qwen2.5-Math-PRM style) through transformers.

The solution's steps are joined by a separator token and one is appended after
the last step; the model's two-class logits at every separator give the
probability that the step so far is right. The first step below the
threshold is the first error, -1 when none is.

The model is loaded as a token classifier with two labels
(``AutoModelForTokenClassification``), the shape of Qwen2.5-Math-PRM's head;
checkpoints with their own modeling code need ``trust_remote_code``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import LocalizeSettings


@dataclass(frozen=True)
class PRMScore:
    first_error: int | None
    probabilities: list[float]


def first_below(probabilities: list[float], threshold: float) -> int:
    return next((i for i, p in enumerate(probabilities) if p < threshold), -1)


_L = LocalizeSettings()  # the defaults live in the settings, declared once


class PRMScorer:
    def __init__(
        self,
        model: str,
        separator: str = _L.prm_separator,
        threshold: float = _L.prm_threshold,
        trust_remote_code: bool = _L.prm_trust_remote_code,
        max_length: int | None = None,
    ):
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        ids = self.tokenizer.encode(separator, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"PRM separator {separator!r} is {len(ids)} tokens in {model}'s tokenizer; "
                "it must be exactly one (add it as a special token)"
            )
        self.model = AutoModelForTokenClassification.from_pretrained(
            model, trust_remote_code=trust_remote_code
        ).eval()
        self.separator, self.separator_id, self.threshold = separator, ids[0], threshold
        self.max_length = max_length

    def text(self, prompt: str, steps: list[str]) -> str:
        return prompt + self.separator.join(steps) + self.separator

    def score(self, prompt: str, steps: list[str]) -> PRMScore:
        enc = self.tokenizer(
            self.text(prompt, steps),
            return_tensors="pt",
            add_special_tokens=False,
            truncation=self.max_length is not None,
            max_length=self.max_length,
        )
        with self.torch.no_grad():
            logits = self.model(**enc).logits[0]
        at = (enc["input_ids"][0] == self.separator_id).nonzero().flatten()
        probs = self.torch.softmax(logits[at].float(), dim=-1)[:, 1].tolist()[: len(steps)]
        first = first_below(probs, self.threshold)
        if first == -1 and len(probs) < len(steps):
            first = None  # truncated before the end: unseen steps are unknown, not right
        return PRMScore(first, [round(p, 6) for p in probs])
