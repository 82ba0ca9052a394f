"""Localization metrics (ProcessBench).

A sample's label is the 0-based index of its earliest wrong step, -1 when
every step is right. Accuracy is exact-index agreement, computed separately on
the erroneous samples (label >= 0) and on the all-correct ones (label -1); F1
is their harmonic mean, in percent. A missing prediction (None: unparseable,
undetermined) counts as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalizationScore:
    n_error: int
    n_correct: int
    acc_error: float  # percent, exact index on samples with an error
    acc_correct: float  # percent, -1 predicted on all-correct samples
    f1: float

    def as_dict(self) -> dict:
        return {
            "n_error": self.n_error,
            "n_correct": self.n_correct,
            "acc_error": round(self.acc_error, 2),
            "acc_correct": round(self.acc_correct, 2),
            "f1": round(self.f1, 2),
        }


def processbench_f1(labels: Sequence[int], predictions: Sequence[int | None]) -> LocalizationScore:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    err = [(y, p) for y, p in zip(labels, predictions, strict=True) if y >= 0]
    ok = [(y, p) for y, p in zip(labels, predictions, strict=True) if y < 0]
    acc_err = 100.0 * sum(p == y for y, p in err) / len(err) if err else 0.0
    acc_ok = 100.0 * sum(p == -1 for _, p in ok) / len(ok) if ok else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok else 0.0
    return LocalizationScore(len(err), len(ok), acc_err, acc_ok, f1)
