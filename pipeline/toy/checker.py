"""Exact step checker: the 0-based index of the first wrong step (ProcessBench
convention, -1 when every step is right).

Steps are the paragraphs of the solution (blank-line separated). Step i < n
must do the problem's i-th instruction on the true running value and get it
right; step n must box the true answer. A missing step is wrong where it
should have been; paragraphs after a correct boxed answer are ignored.
"""

from __future__ import annotations

import re

from pipeline.text import last_boxed
from pipeline.toy.task import OPS, Problem, parse_problem

_STEP = re.compile(
    r"(?P<name>Add|Subtract|Multiply by|Divide by)\s+(?P<b1>-?\d+)\s*:\s*"
    r"(?P<a>-?\d+)\s*(?P<op>[-+*/])\s*(?P<b2>-?\d+)\s*=\s*(?P<c>-?\d+)\s*\.?"
)
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def split_steps(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]


def first_error(problem: Problem | str, solution: str) -> int:
    if isinstance(problem, str):
        problem = parse_problem(problem)
    steps = split_steps(solution)
    a = problem.start
    for i, ((op, b), value) in enumerate(zip(problem.steps, problem.values, strict=True)):
        if i >= len(steps):
            return i
        m = _STEP.fullmatch(steps[i])
        if not m or (
            m["name"] != OPS[op][0]
            or m["op"] != op
            or int(m["b1"]) != b
            or int(m["b2"]) != b
            or int(m["a"]) != a
            or int(m["c"]) != value
        ):
            return i
        a = value
    n = len(problem.steps)
    if n >= len(steps):
        return n
    boxed = last_boxed(steps[n])
    if boxed is None or boxed.strip() != str(problem.answer):
        return n
    return -1


def paragraph_starts(text: str) -> list[int]:
    """Where each of :func:`split_steps`' paragraphs begins in ``text`` (its first
    non-blank character), so a paragraph index can be mapped to a character."""
    starts, pos = [], 0
    for m in [*_PARAGRAPH.finditer(text), None]:
        end = m.start() if m else len(text)
        chunk = text[pos:end]
        if chunk.strip():
            starts.append(pos + len(chunk) - len(chunk.lstrip()))
        if m:
            pos = m.end()
    return starts
