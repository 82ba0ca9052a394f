"""Train the toy teacher or student from scratch on the CPU.

    python -m pipeline.toy.train --role teacher     # writes data/models/toy-teacher
    python -m pipeline.toy.train --role student

A script run once to make the shipped models, not part of the tests. Fixed
seeds; problems are generated on the fly from the shipped levels, one level
per batch so padding stays small; the loss covers the completion only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline.toy.checker import first_error
from pipeline.toy.model import ModelSize, build_model, build_tokenizer, prompt_text, save
from pipeline.toy.task import LEVELS, Level, Problem, generate, make_problem, reference_solution


@dataclass(frozen=True)
class Recipe:
    size: ModelSize
    minutes: float  # wall-clock budget for the optimizer steps
    lr: float
    batch: int = 64
    warmup: int = 100
    level_weights: tuple[float, ...] = (1, 2, 3, 3, 3, 3)  # per LEVELS entry
    seed: int = 0


RECIPES = {
    "teacher": Recipe(ModelSize(layers=4, heads=4, intermediate=1024), minutes=26, lr=2e-3),
    "student": Recipe(ModelSize(layers=2, heads=2, intermediate=512), minutes=6, lr=2e-3, seed=1),
}


def tokenizer_corpus() -> list[str]:
    texts = []
    for level in LEVELS:
        for p in generate(level, 300, seed=99):
            texts += [p.text, reference_solution(p)]
    return texts


def encode(tokenizer, problem: Problem) -> tuple[list[int], list[int]]:
    prompt = tokenizer(prompt_text(tokenizer, problem.text), add_special_tokens=False)["input_ids"]
    completion = tokenizer(
        reference_solution(problem) + tokenizer.eos_token, add_special_tokens=False
    )["input_ids"]
    return prompt + completion, [-100] * len(prompt) + completion


def make_batch(tokenizer, level: Level, rng: random.Random, size: int) -> dict[str, torch.Tensor]:
    pairs = [encode(tokenizer, make_problem(level, rng)) for _ in range(size)]
    width = (
        -(-max(len(ids) for ids, _ in pairs) // 32) * 32
    )  # few distinct shapes for torch.compile
    pad = tokenizer.pad_token_id
    ids = torch.full((size, width), pad, dtype=torch.long)
    labels = torch.full((size, width), -100, dtype=torch.long)
    mask = torch.zeros((size, width), dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.no_grad()
def sample(
    model, tokenizer, problems: list[Problem], temperature: float, max_new_tokens: int = 200
) -> list[str]:
    prompts = [prompt_text(tokenizer, p.text) for p in problems]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = {
        "do_sample": temperature > 0,
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    out = model.generate(**enc, **kwargs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def evaluate(
    model, tokenizer, problems_by_level: dict[str, list[Problem]], temperature: float
) -> dict:
    model.eval()
    report = {}
    for name, problems in problems_by_level.items():
        texts = []
        for i in range(0, len(problems), 128):
            texts += sample(model, tokenizer, problems[i : i + 128], temperature)
        errors = [first_error(p, t) for p, t in zip(problems, texts, strict=True)]
        report[name] = {
            "pass": sum(e == -1 for e in errors) / len(errors),
            "first_error_hist": {str(k): errors.count(k) for k in sorted(set(errors))},
        }
    model.train()
    return report


def train(
    role: str, out: Path, minutes: float | None, eval_problems: int, compile_model: bool
) -> dict:
    recipe = RECIPES[role]
    budget_s = 60 * (minutes if minutes is not None else recipe.minutes)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = random.Random(recipe.seed)
    tokenizer = build_tokenizer(tokenizer_corpus())
    model = build_model(tokenizer, recipe.size)
    n_params = sum(p.numel() for p in model.parameters())
    step_fn = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01)
    # held-out problems: a seed the training stream never uses
    held_out = {lv.name: generate(lv, eval_problems, seed=10_000) for lv in LEVELS}
    est_steps = None
    log: list[dict] = []
    t0 = time.monotonic()
    step = 0
    while time.monotonic() - t0 < budget_s:
        level = rng.choices(LEVELS, weights=recipe.level_weights)[0]
        batch = make_batch(tokenizer, level, rng, recipe.batch)
        elapsed = time.monotonic() - t0
        # cosine over the time budget: the schedule ends when the clock does
        frac = min(1.0, elapsed / budget_s)
        warm = min(1.0, (step + 1) / recipe.warmup)
        lr = recipe.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = step_fn(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 50 == 0:
            rate = step / (time.monotonic() - t0)
            est_steps = int(rate * budget_s)
            print(
                f"step {step}/{est_steps} loss {loss.item():.4f} lr {lr:.2e} {rate:.2f} steps/s",
                flush=True,
            )
            log.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 5),
                    "seconds": round(time.monotonic() - t0),
                }
            )
        if step % 600 == 0:
            quick = evaluate(
                model, tokenizer, {k: v[:64] for k, v in held_out.items()}, temperature=0.0
            )
            print("  greedy:", {k: round(v["pass"], 2) for k, v in quick.items()}, flush=True)
    train_s = time.monotonic() - t0
    model = model.to(torch.float32)
    save(model, tokenizer, out)
    report = {
        "role": role,
        "recipe": asdict(recipe),
        "params": n_params,
        "steps": step,
        "train_seconds": round(train_s),
        "examples_seen": step * recipe.batch,
        "eval_temperature_1": evaluate(model, tokenizer, held_out, temperature=1.0),
        "eval_greedy": evaluate(model, tokenizer, held_out, temperature=0.0),
        "loss_log": log,
    }
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--role", choices=sorted(RECIPES), required=True)
    ap.add_argument("--out", type=Path, default=None, help="default: data/models/toy-ROLE")
    ap.add_argument("--minutes", type=float, default=None, help="override the recipe's time budget")
    ap.add_argument("--eval-problems", type=int, default=200, help="held-out problems per level")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slower steps)")
    args = ap.parse_args()
    out = args.out or Path("data/models") / f"toy-{args.role}"
    report = train(args.role, out, args.minutes, args.eval_problems, not args.no_compile)
    print(json.dumps({k: v for k, v in report.items() if k != "loss_log"}, indent=2))


if __name__ == "__main__":
    main()
