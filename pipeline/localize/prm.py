"""Process-reward-model localization (Qwen2.5-Math-PRM style) through transformers.

The solution's steps are joined by a separator token and one is appended after
the last step; the model's two-class logits at every separator give the
probability that the step so far is right. The first step below the
threshold is the first error, -1 when none is.

Loading follows the checkpoint. Qwen2.5-Math-PRM ships its own modeling code
and names only ``AutoModel`` in its ``auto_map``: it is loaded that way, as its
model card does (``trust_remote_code``), and its first output is the reward
head's two-class logits. A checkpoint saved as a token classifier is loaded as
one. Anything else has no reward head and is refused, and so is a checkpoint
that lacks some of the model's weights: transformers would initialise them at
random and every score would be noise.
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


def load_prm(model: str, trust_remote_code: bool):
    """The PRM at ``model`` with every weight from its checkpoint, or ValueError."""
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    architectures = list(getattr(config, "architectures", None) or [])
    remote = (getattr(config, "auto_map", None) or {}).get("AutoModel")
    if any(a.endswith("ForTokenClassification") for a in architectures):
        cls = AutoModelForTokenClassification
    elif remote:
        if not trust_remote_code:
            raise ValueError(
                f"{model} runs its own modeling code ({remote}); set [localize] "
                "prm_trust_remote_code = true to load it"
            )
        cls = AutoModel
    else:
        raise ValueError(
            f"{model} has no process-reward head (architectures: "
            f"{', '.join(architectures) or 'none'}); a PRM is a token classifier or a "
            "checkpoint with its own code such as Qwen2.5-Math-PRM"
        )
    loaded, info = cls.from_pretrained(
        model, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValueError(
            f"{model}: {len(missing)} weights are not in the checkpoint "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
            "transformers would initialise them at random, and the scores with them"
        )
    return loaded


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
        from transformers import AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        ids = self.tokenizer.encode(separator, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"PRM separator {separator!r} is {len(ids)} tokens in {model}'s tokenizer; "
                "it must be exactly one (add it as a special token)"
            )
        self.model = load_prm(model, trust_remote_code).eval()
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
            out = self.model(**enc)
        logits = (out.logits if hasattr(out, "logits") else out[0])[0]
        at = (enc["input_ids"][0] == self.separator_id).nonzero().flatten()
        probs = self.torch.softmax(logits[at].float(), dim=-1)[:, 1].tolist()[: len(steps)]
        first = first_below(probs, self.threshold)
        if first == -1 and len(probs) < len(steps):
            first = None  # truncated before the end: unseen steps are unknown, not right
        return PRMScore(first, [round(p, 6) for p in probs])
