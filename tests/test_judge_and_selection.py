"""The critic's index parsing and vote, and DART's SFT selection, as plain functions."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.localize.judge import critique_prompt, parse_index, vote
from pipeline.reweight import select_sft


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The error is in paragraph 2. \\boxed{2}", 2),
        ("All fine: \\boxed{-1}", -1),
        ("\\boxed{ 0 }", 0),
        ("first \\boxed{1}, on reflection \\boxed{3}", 3),  # the last box counts
        ("\\boxed{4}", None),  # past the last of 4 steps
        ("\\boxed{-2}", None),
        ("\\boxed{2.5}", None),
        ("\\boxed{paragraph 2}", None),
        ("paragraph 2 is wrong", None),  # no box
        ("\\boxed{", None),
    ],
)
def test_parse_index(text, want):
    assert parse_index(text, 4) == want


def test_vote_takes_the_most_common_valid_index_ties_to_the_earliest():
    v = vote(["\\boxed{2}", "\\boxed{1}", "\\boxed{2}", "no idea"], 4)
    assert (v.first_error, v.votes, v.unparseable) == (2, {2: 2, 1: 1}, 1)
    tie = vote(["\\boxed{3}", "\\boxed{-1}", "\\boxed{1}", "\\boxed{3}", "\\boxed{1}"], 4)
    assert tie.first_error == 1  # 1 and 3 tie: the earlier step
    assert vote(["\\boxed{-1}", "\\boxed{0}"], 4).first_error == -1  # -1 first
    none = vote(["\\boxed{9}", "maybe"], 4)
    assert (none.first_error, none.votes, none.unparseable) == (None, {}, 2)  # undetermined


def test_critique_prompt_numbers_the_steps_from_zero():
    prompt = critique_prompt("What is 1 + 1?", ["1 + 1 = 3.", "So 3."])
    assert "<paragraph_0>\n1 + 1 = 3.\n</paragraph_0>" in prompt
    assert "<paragraph_1>\nSo 3.\n</paragraph_1>" in prompt
    assert prompt.rstrip().endswith("\\boxed{}.")


def traces(spec: dict[str, str], setup: str = "s") -> pl.DataFrame:
    """``spec``: problem -> outcomes in sample order ("1" correct, "0" wrong)."""
    rows = [
        {"setup": setup, "problem_id": p, "trace_id": f"{p}{i}", "sample_index": i}
        | {"correct": c == "1"}
        for p, outcomes in spec.items()
        for i, c in enumerate(outcomes)
    ]
    return pl.DataFrame(rows)


def kept(selection: pl.DataFrame) -> dict[str, list[str]]:
    return {p: g.sort("rank")["trace_id"].to_list() for (p,), g in selection.group_by("problem_id")}


def test_select_all_uniform_and_prop2diff():
    t = traces({"easy": "1111", "hard": "0001", "mid": "0101"})
    assert kept(select_sft(t, "all")) == {
        "easy": ["easy0", "easy1", "easy2", "easy3"],
        "hard": ["hard3"],
        "mid": ["mid1", "mid3"],
    }
    # uniform: the first k_u correct per problem, by sample index
    assert kept(select_sft(t, "uniform", k_u=2)) == {
        "easy": ["easy0", "easy1"],
        "hard": ["hard3"],
        "mid": ["mid1", "mid3"],
    }
    # prop2diff: max(1, ceil(k_p * f / max f)); f: easy 0, mid .5, hard .75
    got = kept(select_sft(t, "prop2diff", k_p=3))
    assert got == {"easy": ["easy0"], "hard": ["hard3"], "mid": ["mid1", "mid3"]}


def test_fail_rate_weights_average_one_and_grow_with_difficulty():
    t = traces({"easy": "1111", "hard": "0001", "mid": "0101"})
    s = select_sft(t, "all", "fail_rate", floor=0.1)
    w = dict(zip(s["trace_id"], s["weight"], strict=True))
    assert s["weight"].mean() == pytest.approx(1.0)
    assert w["hard3"] > w["mid1"] == w["mid3"] > w["easy0"]
    # (f + floor) in proportion: easy .1, mid .6, hard .85
    assert w["hard3"] / w["easy0"] == pytest.approx(0.85 / 0.1)
    assert set(s["recipe"]) == {"all/fail_rate"}


def test_select_rejects_unknown_recipes_and_handles_no_traces():
    assert select_sft(traces({}), "prop2diff", "fail_rate").height == 0
    with pytest.raises(ValueError, match="unknown selection"):
        select_sft(traces({"a": "1"}), "best")
    with pytest.raises(ValueError, match="unknown weighting"):
        select_sft(traces({"a": "1"}), "all", "inverse")


def test_selection_uses_the_frozen_warmup_difficulty():
    # warm-up of 4: easy fails 0/4, hard 3/4. Afterwards easy fails 4 and hard none:
    # the running fail rates (easy 4/8, hard 3/8) would make easy the hardest and
    # keep two of its traces; quotas and weights come from the warm-up alone.
    t = traces({"easy": "11110000", "hard": "00011111"})
    s = select_sft(t, "prop2diff", "fail_rate", k_p=2, warmup_n=4, floor=0.1)
    assert kept(s) == {"easy": ["easy0"], "hard": ["hard3", "hard4"]}
    rates = dict(zip(s["problem_id"], s["fail_rate"], strict=False))
    assert rates == {"easy": 0.0, "hard": 0.75}


def test_selection_is_per_sampling_setup():
    # one problem sampled by two setups: each keeps its own first correct traces and
    # ranks, and its quota comes from its own fail rates
    a = traces({"p": "0011"}, setup="temp 1.0")
    b = traces({"p": "1100"}, setup="temp 0.2").with_columns(
        trace_id=pl.concat_str(pl.lit("b-"), "trace_id")
    )
    s = select_sft(pl.concat([a, b]), "uniform", k_u=1)
    assert sorted(zip(s["trace_id"], s["rank"], strict=True)) == [("b-p0", 0), ("p2", 0)]


def test_first_keeps_the_first_correct_generation_per_problem():
    t = traces({"a": "0110", "b": "0000", "c": "1"})
    s = select_sft(t, "first")
    assert kept(s) == {"a": ["a1"], "c": ["c0"]}
    assert set(s["recipe"]) == {"first/none"}


def test_a_setup_whose_indices_start_late_still_has_a_warmup():
    # imported traces numbered from 9: their first samples are the warm-up, and one
    # such problem does not turn fail-rate weighting off for every other
    late = traces({"imp": "01"}, setup="import").with_columns(pl.col("sample_index") + 9)
    t = pl.concat([traces({"easy": "11", "hard": "01"}), late])
    s = select_sft(t, "all", "fail_rate", warmup_n=8, floor=0.1)
    rates = dict(zip(s["problem_id"], s["fail_rate"], strict=False))
    assert rates == {"easy": 0.0, "hard": 0.5, "imp": 0.5}
    w = dict(zip(s["trace_id"], s["weight"], strict=True))
    assert w["hard1"] > w["easy0"] and s["weight"].is_nan().sum() == 0
