"""PRM scoring through transformers, on a tiny token-classification model built here.

No real PRM can be downloaded, so the test model's head is set by hand: zero
weights and a chosen bias make every separator's positive-class probability a
known number. That checks what pitfall owns: the input layout, reading the
logits at the separators, one probability per step, the threshold, truncation.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForTokenClassification

from pipeline.localize.prm import PRMScorer, first_below
from tests.conftest import STUDENT

pytestmark = pytest.mark.slow  # PRM models

STEPS = ["Add 3: 2 + 3 = 5.", "Multiply by 2: 5 * 2 = 10.", "The answer is \\boxed{10}."]


def tiny_prm(path, bias: tuple[float, float]):
    tok = AutoTokenizer.from_pretrained(STUDENT)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
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
