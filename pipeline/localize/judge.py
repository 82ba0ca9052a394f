"""LLM-critic localization with ProcessBench's critique prompt.

The critic sees the problem and the solution as numbered paragraphs and
answers the earliest wrong index, or -1, inside ``\\boxed{}``. Over n samples
the most common valid index wins (ties: the smallest index, -1 first); answers that are
not an integer in [-1, steps) are counted as unparseable, and a trace with
no valid answer at all stays undetermined.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pipeline.text import last_boxed

# ProcessBench's template (Zheng et al. 2024, code/critic_template)
TEMPLATE = """The following is a math problem and a solution (split into paragraphs, \
enclosed with tags and indexed from 0):

[Math Problem]

{problem}

[Solution]

{paragraphs}

Your task is to review and critique the solution paragraph by paragraph. Once you \
identify an error in a paragraph, return the index of the paragraph where the earliest \
error occurs. Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{{}}."""

_INT = re.compile(r"\s*(-?\d+)\s*")


@dataclass(frozen=True)
class Vote:
    first_error: int | None
    votes: dict[int, int]
    unparseable: int


def critique_prompt(problem: str, steps: list[str]) -> str:
    paragraphs = "\n\n".join(
        f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(steps)
    )
    return TEMPLATE.format(problem=problem, paragraphs=paragraphs)


def parse_index(text: str, n_steps: int) -> int | None:
    boxed = last_boxed(text)
    if boxed is None:
        return None
    m = _INT.fullmatch(boxed)
    if not m:
        return None
    index = int(m[1])
    return index if -1 <= index < n_steps else None


def vote(answers: list[str], n_steps: int) -> Vote:
    parsed = [parse_index(a, n_steps) for a in answers]
    counts = Counter(p for p in parsed if p is not None)
    if not counts:
        return Vote(None, {}, len(parsed))
    top = max(counts.values())
    winner = min(i for i, c in counts.items() if c == top)
    return Vote(winner, dict(counts), sum(p is None for p in parsed))
