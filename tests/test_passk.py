"""pass@k (Chen et al. 2021) against hand values, and its standard error."""

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.passk import mean_pass_at_k, pass_at_k


def test_pass_at_k_by_hand():
    # 10 samples, 3 correct: pass@1 = 3/10; pass@2 = 1 - C(7,2)/C(10,2) = 1 - 21/45
    assert pass_at_k(10, 3, 1) == Fraction(3, 10)
    assert pass_at_k(10, 3, 2) == 1 - Fraction(21, 45)
    # pass@4 = 1 - C(7,4)/C(10,4) = 1 - 35/210
    assert pass_at_k(10, 3, 4) == Fraction(5, 6)


def test_edge_cases_n_equals_k_and_no_correct():
    assert pass_at_k(8, 0, 8) == 0  # c = 0: never
    assert pass_at_k(8, 0, 1) == 0
    assert pass_at_k(8, 1, 8) == 1  # n = k: any correct sample is drawn
    assert pass_at_k(8, 8, 1) == 1
    assert pass_at_k(5, 3, 3) == 1  # n - c < k: every draw holds a correct one


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_impossible_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))
    )
)
def test_pass_at_k_is_the_chance_a_random_k_subset_holds_a_correct_sample(nck):
    n, c, k = nck
    # count the k-subsets without a correct sample directly
    miss = math.comb(n - c, k) if n - c >= k else 0
    assert pass_at_k(n, c, k) == 1 - Fraction(miss, math.comb(n, k))
    if k < n:
        assert pass_at_k(n, c, k) <= pass_at_k(n, c, k + 1)


def test_mean_and_standard_error_over_problems():
    # per-problem pass@1: 1/4, 3/4, 1/2 -> mean 1/2, sd = 1/4, se = 1/4 / sqrt(3)
    score = mean_pass_at_k([(4, 1), (4, 3), (4, 2)], 1)
    assert score.value == pytest.approx(0.5)
    assert score.se == pytest.approx(0.25 / math.sqrt(3))
    assert score.problems == 3
    one = mean_pass_at_k([(4, 1)], 1)
    assert (one.value, one.se) == (0.25, 0.0)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)
