"""What a store holds, in one row: problems, traces, pass rate, labels, pairs, SFT rows."""

from __future__ import annotations

from pipeline.store import Store
from pipeline.verify import VERIFIER


def store_report(store: Store) -> tuple[dict, dict[str, int]]:
    """The store's totals (one row) and its pairs by kind."""
    report = store.stage("report", {"verifier": VERIFIER}).to_dicts()[0]
    return report, dict(store.stage("pairs_by_kind").iter_rows())
