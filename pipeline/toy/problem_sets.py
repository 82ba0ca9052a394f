"""Write the shipped problem sets: data/toy/train.jsonl and data/toy/test.jsonl.

    python -m pipeline.toy.problem_sets

Disjoint by problem text; each row has problem, answer, solution (the
canonical reference) and level, so `pitfall ingest` takes them with no flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.toy.task import LEVELS, Problem, generate, reference_solution

TRAIN_SEED, TEST_SEED = 1, 2


def rows(problems: list[Problem]) -> list[dict]:
    return [
        {
            "problem": p.text,
            "answer": str(p.answer),
            "solution": reference_solution(p),
            "level": p.level,
        }
        for p in problems
    ]


def build(train_per_level: int, test_per_level: int) -> tuple[list[dict], list[dict]]:
    train, test = [], []
    for level in LEVELS:
        test_level = _unique(generate(level, test_per_level * 2, TEST_SEED))[:test_per_level]
        held = {p.text for p in test_level}
        train_level = [
            p
            for p in _unique(generate(level, train_per_level * 2, TRAIN_SEED))
            if p.text not in held
        ]
        test += rows(test_level)
        train += rows(train_level[:train_per_level])
    return train, test


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("data/toy"))
    ap.add_argument("--train-per-level", type=int, default=500)
    ap.add_argument("--test-per-level", type=int, default=50)
    args = ap.parse_args()
    train, test = build(args.train_per_level, args.test_per_level)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in (("train", train), ("test", test)):
        with (args.out / f"{name}.jsonl").open("w") as fh:
            for row in data:
                fh.write(json.dumps(row) + "\n")
        print(f"{args.out / name}.jsonl: {len(data)} problems")


if __name__ == "__main__":
    main()
