"""Which traces localization takes: by default only those the verifier judged wrong
(and correct ones, labelled -1 for free); the rest are counted by reason."""

from __future__ import annotations

import polars as pl

from pipeline.config import load_settings
from pipeline.stages import StageContext
from pipeline.stages import segment as segment_stage
from pipeline.stages.localize import excluded, localize, targets
from pipeline.store import Store
from pipeline.verify import VERIFIER

STEPS = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nThe answer is \\boxed{10}."
OUTCOMES = {  # trace -> verdict
    "C": "correct",
    "W": "wrong",
    "T": "truncated",
    "N": "no_answer",
    "O": "timeout",
    "E": "error",
}


def store_with_every_outcome(path):
    settings = load_settings(None, {"store": {"path": path}})
    with Store.writer(path, command="t") as store:
        store.insert_new(
            "problems",
            pl.DataFrame([{"problem_id": "P", "problem": "p", "answer": "10", "source": "t"}]),
        )
        store.insert_new(
            "traces",
            pl.DataFrame(
                [
                    {"trace_id": t, "problem_id": "P", "model": "m", "params_id": "p"}
                    | {"sample_index": i, "prompt": "q", "completion": STEPS}
                    | {"finish_reason": "length" if t == "T" else "stop"}
                    for i, t in enumerate(OUTCOMES)
                ]
            ),
        )
        store.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": t, "trace_id": t, "verifier": VERIFIER, "status": s}
                    for t, s in OUTCOMES.items()
                ]
            ),
        )
        segment_stage.run(StageContext(store, settings))
    return settings


def test_only_wrong_traces_are_localized_by_default_and_the_rest_are_counted(tmp_path):
    settings = store_with_every_outcome(tmp_path / "s.duckdb")
    settings.localize.per_problem = 0
    with Store.writer(settings.store.path, command="loc") as store:
        ctx = StageContext(store, settings)
        assert sorted(targets(ctx, "mc-binary", need_gold=True)["trace_id"]) == ["C", "W"]
        assert excluded(ctx) == {
            "error (not localized)": 1,
            "no_answer (not localized)": 1,
            "timeout (not localized)": 1,
            "truncated (not localized)": 1,
        }
        # a method that needs no model: the exclusions are in the stage's result
        result = localize(ctx, "annotated")
        assert result.skipped["truncated (not localized)"] == 1
        settings.localize.admit = ["truncated"]
        got = targets(ctx, "mc-binary", need_gold=True)
        assert dict(zip(got["trace_id"], got["status"], strict=True)) == {
            "C": "correct",
            "T": "truncated",
            "W": "wrong",
        }
        assert "truncated (not localized)" not in excluded(ctx)
