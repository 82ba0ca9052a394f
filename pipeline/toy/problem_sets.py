"""Write the shipped problem sets: data/toy/train.jsonl and data/toy/test.jsonl,
and two parts of train.jsonl: curate.jsonl and val.jsonl.

    python -m pipeline.toy.problem_sets

Train and test are disjoint by problem text; each row has problem, answer,
solution (the canonical reference) and level, so `pitfall ingest` takes them
with no flags. curate.jsonl (the first CURATE_PER_LEVEL problems of each train
level) is what the default `pitfall run` curates from, small enough for its
time budget; val.jsonl (the last VAL_PER_LEVEL of each train level, disjoint
from curate.jsonl) is where bench/toy_table.py tunes hyperparameters, so the
test split is only ever evaluated on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.toy.task import LEVELS, Problem, generate, reference_solution

TRAIN_SEED, TEST_SEED = 1, 2
CURATE_PER_LEVEL, VAL_PER_LEVEL = 50, 20


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


def parts(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """curate.jsonl and val.jsonl: the head and the tail of each train level."""
    levels: dict[str, list[dict]] = {}
    for row in train:
        levels.setdefault(row["level"], []).append(row)
    curate = [r for rows_ in levels.values() for r in rows_[:CURATE_PER_LEVEL]]
    val = [r for rows_ in levels.values() for r in rows_[-VAL_PER_LEVEL:]]
    return curate, val


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
    curate, val = parts(train)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in (("train", train), ("test", test), ("curate", curate), ("val", val)):
        with (args.out / f"{name}.jsonl").open("w") as fh:
            for row in data:
                fh.write(json.dumps(row) + "\n")
        print(f"{args.out / name}.jsonl: {len(data)} problems")


if __name__ == "__main__":
    main()
