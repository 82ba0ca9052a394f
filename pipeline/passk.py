"""pass@k as Chen et al. (2021) estimate it, and its standard error over problems.

With n samples of a problem of which c are correct, the unbiased estimate of
the chance that at least one of k samples is correct is
``1 - C(n - c, k) / C(n, k)``. It is exact in integers (``math.comb``) and
needs k <= n: with fewer samples than k there is nothing unbiased to say.
pass@1 is then c / n, the mean over the n samples.

A model's pass@k is the mean of the per-problem estimates; its standard error
is their sample standard deviation over the problems divided by sqrt(P). It
measures how much the figure would move with another draw of problems (and of
samples), which is what two models compared on one problem set need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


def pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The unbiased pass@k of one problem, exact."""
    if not 0 <= c <= n:
        raise ValueError(f"{c} correct out of {n} samples")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n = {n} samples")
    if n - c < k:  # every draw of k holds a correct sample
        return Fraction(1)
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@dataclass(frozen=True)
class PassAtK:
    k: int
    value: float  # mean over problems, in [0, 1]
    se: float  # standard error over problems (0 for a single problem)
    problems: int


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> PassAtK:
    """pass@k over problems given each one's (n, c)."""
    if not counts:
        raise ValueError("no problems to average over")
    values = [float(pass_at_k(n, c, k)) for n, c in counts]
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return PassAtK(k, mean, 0.0, len(values))
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return PassAtK(k, mean, math.sqrt(var / len(values)), len(values))
