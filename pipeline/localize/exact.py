"""Exact first errors, for problem families that come with a step checker.

A checker names the first wrong paragraph of a solution. The label must speak
of the trace's own steps, which segmentation may have merged from several
paragraphs, so the paragraph is mapped to the step that holds its first
character. Problems no checker recognizes get no label (the stage counts
them): this method is ground truth where it exists, and nowhere else.

The toy world's checker (``pipeline.toy.checker``) is the one registered; a
real task with checkable steps registers its own here.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.toy import checker as toy_checker
from pipeline.toy.task import parse_problem


@dataclass(frozen=True)
class Checker:
    recognizes: Callable[[str], bool]  # problem text -> has this checker
    first_paragraph: Callable[[str, str], int]  # (problem, solution) -> index, -1: none
    paragraph_starts: Callable[[str], list[int]]  # solution -> each paragraph's offset


def _is_toy(problem: str) -> bool:
    try:
        parse_problem(problem)
    except ValueError:
        return False
    return True


CHECKERS: dict[str, Checker] = {
    "toy": Checker(_is_toy, toy_checker.first_error, toy_checker.paragraph_starts),
}


def checker_for(problem: str) -> Checker | None:
    return next((c for c in CHECKERS.values() if c.recognizes(problem)), None)


def first_error(checker: Checker, problem: str, completion: str, starts: list[int]) -> int:
    """The 0-based index of the trace step (steps begin at ``starts``) holding the
    checker's first wrong paragraph; -1 when every step is right. A paragraph the
    solution never wrote (it stopped early) is the last step's fault."""
    paragraph = checker.first_paragraph(problem, completion)
    if paragraph < 0:
        return -1
    offsets = checker.paragraph_starts(completion)
    if paragraph >= len(offsets):
        return len(starts) - 1
    return max(0, bisect_right(starts, offsets[paragraph]) - 1)
