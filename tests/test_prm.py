"""PRM scoring through transformers, on a tiny token-classification model built here.

No real PRM can be downloaded, so the test model's head is set by hand: zero
weights and a chosen bias make every separator's positive-class probability a
known number. That checks what pitfall owns: the input layout, reading the
logits at the separators, one probability per step, the threshold, truncation.
"""

from __future__ import annotations

import math

import pytest

from pipeline.localize.prm import PRMScorer, first_below
from tests.conftest import STUDENT

pytestmark = pytest.mark.slow  # PRM models

STEPS = ["Add 3: 2 + 3 = 5.", "Multiply by 2: 5 * 2 = 10.", "The answer is \\boxed{10}."]


def separator_tokenizer():
    """The toy tokenizer with Qwen2.5-Math-PRM's step separator as one token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(STUDENT)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    return tok


def tiny_prm(path, bias: tuple[float, float]):
    import torch
    from transformers import LlamaConfig, LlamaForTokenClassification

    tok = separator_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        num_labels=2,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForTokenClassification(config)
    with torch.no_grad():
        model.score.weight.zero_()
        model.score.bias.copy_(torch.tensor(bias))  # the head is nn.Linear with a bias
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_first_below():
    assert first_below([0.9, 0.8, 0.2, 0.1], 0.5) == 2
    assert first_below([0.9, 0.8], 0.5) == -1


def test_scores_one_probability_per_step(tmp_path):
    # bias favours class 1 ("right"): p = sigmoid(2) at every separator
    scorer = PRMScorer(str(tiny_prm(tmp_path / "good", (0.0, 2.0))), threshold=0.5)
    score = scorer.score("<s><|user|>Start with 2.\n<|assistant|>", STEPS)
    assert len(score.probabilities) == 3
    assert all(p == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-4) for p in score.probabilities)
    assert score.first_error == -1
    assert scorer.text("Q ", ["a", "b"]) == "Q a<extra_0>b<extra_0>"


def test_low_scores_flag_the_first_step(tmp_path):
    scorer = PRMScorer(str(tiny_prm(tmp_path / "bad", (2.0, 0.0))), threshold=0.5)
    assert scorer.score("Q: ", STEPS).first_error == 0


def test_truncated_input_is_undetermined_not_clean(tmp_path):
    scorer = PRMScorer(str(tiny_prm(tmp_path / "cut", (0.0, 2.0))), max_length=12)
    score = scorer.score("Q: ", STEPS)
    assert len(score.probabilities) < 3 and score.first_error is None


def test_separator_must_be_one_token(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        PRMScorer(str(STUDENT), separator="<not a token>")


def test_prm_method_needs_a_model(pitfall):
    result = pitfall("localize", "--method", "prm", ok=False)
    assert result.exit_code == 2
    assert "prm_model" in result.output


# Qwen2.5-Math-PRM's own modeling code, in the shape its checkpoint has: a Qwen2
# decoder and a two-layer reward head (score.0, score.2) whose two-class logits are
# the model's first output. Its auto_map names only AutoModel: no token classifier.
REMOTE_CODE = """
import torch
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Linear(config.hidden_size, 2),
        )
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)
"""


def qwen_style_prm(path, bias: tuple[float, float] | None):
    """A tiny randomly initialised model of Qwen2.5-Math-PRM's shape, saved with its
    modeling file; ``bias`` None saves it without its reward head."""
    import importlib.util
    import sys

    import torch
    from transformers import Qwen2Config

    path.mkdir(parents=True)
    (path / "modeling_qwen2_rm.py").write_text(REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("tiny_qwen2_rm", path / "modeling_qwen2_rm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_qwen2_rm"] = module
    spec.loader.exec_module(module)
    tok = separator_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tok.pad_token_id,
        architectures=["Qwen2ForProcessRewardModel"],
        auto_map={"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
    )
    model = module.Qwen2ForProcessRewardModel(config)
    with torch.no_grad():
        model.score[2].weight.zero_()
        model.score[2].bias.copy_(torch.tensor(bias or (0.0, 0.0)))
    state = model.state_dict()
    if bias is None:
        state = {k: v for k, v in state.items() if not k.startswith("score.")}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    config.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_qwen_style_prm_loads_with_its_own_code_and_its_trained_head(tmp_path):
    """Qwen2.5-Math-PRM loads through AutoModel with its remote code; as a generic
    token classifier it got a freshly initialised head and random scores."""
    path = qwen_style_prm(tmp_path / "qwen-prm", (0.0, 2.0))
    scorer = PRMScorer(str(path), threshold=0.5, trust_remote_code=True)
    score = scorer.score("Q: ", STEPS)
    assert score.probabilities == pytest.approx([1 / (1 + math.exp(-2))] * 3, abs=1e-4)
    assert score.first_error == -1
    low = PRMScorer(str(qwen_style_prm(tmp_path / "low", (2.0, 0.0))), trust_remote_code=True)
    assert low.score("Q: ", STEPS).first_error == 0


def test_a_prm_without_its_head_weights_is_refused(tmp_path):
    path = qwen_style_prm(tmp_path / "headless", None)
    with pytest.raises(ValueError, match=r"not in the checkpoint.*score\."):
        PRMScorer(str(path), trust_remote_code=True)
    # a language model is not a PRM: no reward head at all
    with pytest.raises(ValueError, match="no process-reward head"):
        PRMScorer(str(STUDENT), separator="<|user|>")


def test_a_prm_with_its_own_code_needs_trust_remote_code(tmp_path):
    path = qwen_style_prm(tmp_path / "remote", (0.0, 2.0))
    with pytest.raises(ValueError, match="prm_trust_remote_code"):
        PRMScorer(str(path))
