"""DART allocation as pure functions, checked against hand-computed tables."""

import math
from fractions import Fraction

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.dart import DartPlan, allocate, status, targets


def counters(rows):
    """(problem, trials, correct[, warm-up trials, warm-up correct]); without the
    last two, every trial so far is in the warm-up."""
    rows = [r if len(r) == 5 else (*r, r[1], r[2]) for r in rows]
    return pl.DataFrame(
        rows,
        schema=["problem_id", "n_trials", "n_correct", "warmup_trials", "warmup_correct"],
        orient="row",
    )


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


def test_prop2diff_quotas_are_exact():
    # 7/10 correct beside a 0/10 problem: 10 * 0.3 is 3.0000000000000004 in floats
    t = targets(counters([("a", 10, 7), ("b", 10, 0)]), DartPlan("prop2diff", k_p=10, warmup_n=10))
    assert t["target"].to_list() == [3, 10]


@given(
    st.lists(
        st.tuples(st.integers(1, 64), st.integers(0, 64)).map(lambda t: (t[0], min(t[0], t[1]))),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 300),
)
@example([(10, 7), (10, 0)], 10)
def test_prop2diff_target_is_the_least_integer_at_or_over_the_exact_quota(rows, k_p):
    c = counters([(f"p{i}", n, k) for i, (n, k) in enumerate(rows)])
    got = targets(c, DartPlan("prop2diff", k_p=k_p, warmup_n=1))["target"].to_list()
    fail = [Fraction(n - k, n) for n, k in rows]
    worst = max(fail)
    for f, t in zip(fail, got, strict=True):
        quota = k_p * f / worst if worst else Fraction(0)
        assert t == max(1, math.ceil(quota))
        assert t >= quota and (t == 1 or t - 1 < quota)


def test_prop2diff_difficulty_is_frozen_after_the_warmup():
    # warm-up (8 each): x 4/8 wrong, y 8/8 wrong -> targets x 8, y 16 (k_p 16). Later
    # rounds change the running fail rates (x 8/16 correct, y 12/40), not the targets:
    # x stays done instead of reopening at ceil(16 * .5 / .7) = 12.
    plan = DartPlan("prop2diff", k_p=16, warmup_n=8, n_max=64)
    c = counters([("x", 16, 8, 8, 4), ("y", 40, 12, 8, 0)])
    st_ = status(c, plan)
    assert st_["target"].to_list() == [8, 16]
    assert st_["status"].to_list() == ["done", "sampling"]
    assert allocate(c, plan)["problem_id"].to_list() == ["y"]


def test_fixed_respects_the_trial_cap():
    plan = DartPlan("fixed", n_fixed=10, n_max=4, round_size=8)
    c = counters([("a", 0, 0), ("b", 4, 1)])
    assert allocate(c, plan).rows() == [("a", 0, 4)]
    assert status(c, plan)["status"].to_list() == ["sampling", "capped"]


def test_counters_from_the_store_count_the_warmup_apart(store_path):
    from pipeline.store import Store
    from pipeline.verify import VERIFIER

    outcomes = "010100001111"  # samples 0-11: 2 of the first 8 correct, 6 of all 12
    with Store.writer(store_path, command="test") as store:
        store.insert_new(
            "problems",
            pl.DataFrame([{"problem_id": "P", "problem": "p", "answer": "1", "source": "t"}]),
        )
        store.insert_new(
            "traces",
            pl.DataFrame(
                [
                    {"trace_id": f"T{i}", "problem_id": "P", "model": "m", "params_id": "p"}
                    | {"sample_index": i, "prompt": "q", "completion": "c", "finish_reason": "stop"}
                    for i in range(12)
                ]
            ),
        )
        store.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": f"V{i}", "trace_id": f"T{i}", "verifier": VERIFIER}
                    | {"status": "correct" if c == "1" else "wrong"}
                    for i, c in enumerate(outcomes)
                ]
            ),
        )
        scope = {"model": "m", "params_id": "p", "verifier": VERIFIER, "sources": []}
        c = store.stage("dart_counters", scope | {"warmup_n": 8})
        assert c.select("n_trials", "n_correct", "warmup_trials", "warmup_correct").row(0) == (
            12,
            6,
            8,
            2,
        )
        plan = DartPlan("prop2diff", k_p=4, warmup_n=8)
        store.replace_rows("difficulty", status(c, plan))
        stored = store.query("SELECT warmup_trials, warmup_correct, target FROM difficulty")
        assert stored.row(0) == (8, 2, 4)  # the only problem is the hardest: k_p
