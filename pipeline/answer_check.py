"""One (gold, answer) check with math-verify.

This is all a verification worker imports (with math-verify and sympy), so a
worker starts in the time a fork takes; see ``pipeline/verify_pool.py``.

Only LaTeX extraction is used: math-verify's plain-expression parser goes
through sympy's ``parse_expr``, which evaluates Python, and model text is
never evaluated as code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Check:
    """One (gold, extracted) pair to verify."""

    gold: str
    answer: str


@dataclass(frozen=True)
class Outcome:
    status: str  # correct / wrong / no_answer / timeout / error
    seconds: float
    detail: str | None = None


@lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    return _parse(gold)


def _parse(answer: str):
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${answer}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)


def check_one(check: Check) -> tuple[str, str | None]:
    """Verify in this process (a worker's main thread). Gold first: verify is not symmetric."""
    from math_verify import verify

    gold = _parse_gold(check.gold)
    if not gold:
        return "error", "gold answer does not parse"
    pred = _parse(check.answer)
    if not pred:  # nothing usable was said: not a wrong answer, no answer
        return "no_answer", "answer does not parse"
    return ("correct" if verify(gold, pred, timeout_seconds=None) else "wrong"), None


def checked(check: Check) -> tuple[str, str | None]:
    """``check_one`` with any exception turned into an ``error`` verdict."""
    try:
        return check_one(check)
    except Exception as exc:  # a verdict, not a crash
        return "error", f"{type(exc).__name__}: {exc}"[:500]


def quiet() -> None:
    """math-verify warns on every call that its own timeouts are off: the pool's kill is the timeout."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
