"""The toy task: chained integer arithmetic whose every step can be checked exactly.

A problem reads "Start with 17. Add 5. Multiply by 3. Subtract 8. What is the
result?". The canonical solution has one step per paragraph, each restating
its instruction and doing it, and a last paragraph with the boxed answer:

    Add 5: 17 + 5 = 22.

    Multiply by 3: 22 * 3 = 66.

    Subtract 8: 66 - 8 = 58.

    The answer is \\boxed{58}.

Difficulty knobs: the number of operations, the range of the start value and
operands, the cap on running values, and which operators appear. Everything is
deterministic from a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

OPS = {
    "+": ("Add", "{b}"),
    "-": ("Subtract", "{b}"),
    "*": ("Multiply by", "{b}"),
    "/": ("Divide by", "{b}"),
}


@dataclass(frozen=True)
class Level:
    """One difficulty level: ``n_ops`` operations on values up to ``max_value``."""

    n_ops: int
    max_value: int = 99
    max_addend: int = 9
    max_factor: int = 5
    ops: tuple[str, ...] = ("+", "-", "*", "/")

    @property
    def name(self) -> str:
        return f"ops{self.n_ops}-v{self.max_value}"


# The shipped levels, easiest first. The last is the "hardest shipped level".
LEVELS: tuple[Level, ...] = (
    Level(1),
    Level(2),
    Level(3),
    Level(4),
    Level(5),
    Level(8, max_value=199, max_addend=19),
)


@dataclass(frozen=True)
class Problem:
    start: int
    steps: tuple[tuple[str, int], ...]  # (operator, operand)
    level: str = ""
    values: tuple[int, ...] = field(default=(), compare=False)  # running value after each step

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def text(self) -> str:
        parts = [f"Start with {self.start}."]
        parts += [f"{OPS[op][0]} {b}." for op, b in self.steps]
        return " ".join(parts) + " What is the result?"


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a // b
    raise ValueError(op)


def make_problem(level: Level, rng: random.Random) -> Problem:
    """A problem whose running values stay in [0, max_value] and divide exactly."""
    value = rng.randint(1, level.max_value if level.max_value < 100 else 99)
    start, steps, values = value, [], []
    for _ in range(level.n_ops):
        choices = []
        for op in level.ops:
            if op == "+" and value + 1 <= level.max_value:
                choices.append((op, rng.randint(1, min(level.max_addend, level.max_value - value))))
            elif op == "-" and value >= 1:
                choices.append((op, rng.randint(1, min(level.max_addend, value))))
            elif op == "*" and value * 2 <= level.max_value and value > 0:
                choices.append(
                    (op, rng.randint(2, min(level.max_factor, level.max_value // value)))
                )
            elif op == "/":
                divisors = [
                    d for d in range(2, level.max_factor + 1) if value % d == 0 and value > 0
                ]
                if divisors:
                    choices.append((op, rng.choice(divisors)))
        op, b = rng.choice(choices)
        value = _apply(op, value, b)
        steps.append((op, b))
        values.append(value)
    return Problem(start, tuple(steps), level.name, tuple(values))


def generate(level: Level, n: int, seed: int) -> list[Problem]:
    rng = random.Random(f"{seed}-{level.name}")
    return [make_problem(level, rng) for _ in range(n)]


def step_text(op: str, a: int, b: int, result: int) -> str:
    return f"{OPS[op][0]} {b}: {a} {op} {b} = {result}."


def reference_solution(problem: Problem) -> str:
    paragraphs, a = [], problem.start
    for (op, b), value in zip(problem.steps, problem.values, strict=True):
        paragraphs.append(step_text(op, a, b, value))
        a = value
    paragraphs.append(f"The answer is \\boxed{{{problem.answer}}}.")
    return "\n\n".join(paragraphs)


def parse_problem(text: str) -> Problem:
    """Recover a Problem from its text (the step checker gets only strings)."""
    import re

    m = re.fullmatch(r"Start with (-?\d+)\. (.*)What is the result\?", text.strip(), re.S)
    if not m:
        raise ValueError(f"not a toy problem: {text[:80]!r}")
    words = {v[0]: k for k, v in OPS.items()}
    steps, value, values = [], int(m[1]), []
    for name, b in re.findall(r"(Add|Subtract|Multiply by|Divide by) (\d+)\.", m[2]):
        op = words[name]
        steps.append((op, int(b)))
        value = _apply(op, value, int(b))
        values.append(value)
    return Problem(int(m[1]), tuple(steps), "", tuple(values))
