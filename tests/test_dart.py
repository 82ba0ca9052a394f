"""DART allocation as pure functions, checked against hand-computed tables."""

import polars as pl
import pytest

from pipeline.dart import DartPlan, allocate, status, targets


def counters(rows):
    return pl.DataFrame(rows, schema=["problem_id", "n_trials", "n_correct"], orient="row")


def test_prop2diff_targets_follow_the_formula():
    # fail rates 0, 0.25, 0.5, 1.0 -> ceil(k_p * f / max f) = 1 (floor), 3, 5, 10
    c = counters([("a", 8, 8), ("b", 8, 6), ("c", 8, 4), ("d", 8, 0)])
    t = targets(c, DartPlan("prop2diff", k_p=10, warmup_n=8))
    assert t["target"].to_list() == [1, 3, 5, 10]


def test_prop2diff_waits_for_the_warmup():
    c = counters([("a", 8, 8), ("b", 3, 1)])
    plan = DartPlan("prop2diff", k_p=10, warmup_n=8, round_size=4)
    assert targets(c, plan)["target"].null_count() == 2
    todo = allocate(c, plan)
    assert todo.rows() == [("b", 3, 5)]  # only the unfinished warm-up, topped up to 8


def test_uniform_rounds_stop_at_target_or_cap():
    c = counters(
        [
            ("done", 10, 4),
            ("going", 10, 1),
            ("near_cap", 14, 0),
            ("capped", 16, 2),
            ("unsolved", 16, 0),
        ]
    )
    plan = DartPlan("uniform", k_u=4, n_max=16, round_size=4)
    st = status(c, plan)
    assert dict(zip(st["problem_id"], st["status"], strict=True)) == {
        "done": "done",
        "going": "sampling",
        "near_cap": "sampling",
        "capped": "capped",
        "unsolved": "unsolved",
    }
    assert allocate(c, plan).rows() == [("going", 10, 4), ("near_cap", 14, 2)]


def test_fixed_counts_trials():
    c = counters([("a", 0, 0), ("b", 6, 0), ("c", 8, 3)])
    plan = DartPlan("fixed", n_fixed=8, round_size=4)
    assert allocate(c, plan).rows() == [("a", 0, 4), ("b", 6, 2)]
    assert status(c, plan)["status"].to_list() == ["sampling", "sampling", "done"]


def test_rates():
    st = status(counters([("a", 4, 1), ("b", 0, 0)]), DartPlan("uniform", k_u=2))
    assert st["pass_rate"].to_list() == [0.25, None]
    assert st["fail_rate"].to_list() == [0.75, None]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown DART strategy"):
        DartPlan("greedy")
