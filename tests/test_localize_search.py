"""Monte-Carlo first-error search: decisions and rollout budgets.

The searches are pure bookkeeping; here they are fed by a scripted oracle
(a prefix is alive iff it is before the planted error, and then each rollout
succeeds with a fixed pattern), which is what makes exact budgets checkable.
The real policy path (vLLM rollouts, store reuse) is in test_localize_store.py.
"""

import math

import pytest

from pipeline.localize.search import BinarySearch, LinearSearch
from pipeline.segment import segment


def run(search, alive, pattern=(True,)):
    """Feed ``search`` until done; ``alive(p)`` says whether prefix p can succeed,
    and an alive prefix's rollout i succeeds when pattern[i % len(pattern)]."""
    while not search.done:
        for q, m in search.requests():
            search.observe(q, [alive(q) and pattern[i % len(pattern)] for i in range(m)])
    return search.result


@pytest.mark.parametrize("n_steps", [1, 2, 3, 6, 9, 32])
def test_binary_and_linear_find_the_planted_error(n_steps):
    for error in range(n_steps):
        alive = lambda p, e=error: p <= e  # noqa: E731  (prefixes before the error are alive)
        assert run(BinarySearch(n_steps, k=8), alive) == error
        assert run(LinearSearch(n_steps, k=8), alive) == error


def test_correct_trace_is_minus_one_without_rollouts():
    for cls in (BinarySearch, LinearSearch):
        s = cls(6, k=8, wrong=False)
        assert s.done and s.result == -1 and s.requests() == [] and s.n_rollouts == 0


def test_unsolvable_problem_is_undetermined_not_step_zero():
    for cls in (BinarySearch, LinearSearch):
        s = cls(5, k=4)
        assert run(s, lambda p: False) is None
        assert 0 in s.used  # the empty prefix was probed before blaming step 0


def test_binary_stops_a_probe_once_its_verdict_is_settled():
    s = BinarySearch(8, k=8)
    assert s.requests() == [(4, 1)]  # one rollout first
    s.observe(4, [True])  # alive at the first success
    assert s.used == {4: 1} and s.requests() == [(6, 1)]
    s.observe(6, [False])
    assert s.requests() == [(6, 2)]  # then 2, 4, 8
    s.observe(6, [False, False])
    assert s.requests() == [(6, 4)]
    s.observe(6, [False] * 4)
    assert s.requests() == [(6, 8)]
    s.observe(6, [False] * 8)  # dead only when all k failed
    assert s.used == {4: 1, 6: 8} and s.requests() == [(5, 1)]


def test_threshold_two_needs_two_successes():
    s = BinarySearch(4, k=4, threshold=2)
    assert s.requests() == [(2, 2)]
    s.observe(2, [True, False])
    assert s.requests() == [(2, 4)]
    s.observe(2, [True, False, False, False])  # 1 < 2: dead
    assert s.hi == 2
    with pytest.raises(ValueError, match="threshold"):
        BinarySearch(4, k=2, threshold=3)


def test_linear_labels_the_first_dead_prefix_even_when_values_recover():
    # Math-Shepherd is not fooled by a later prefix that looks alive again
    alive = {1: True, 2: False, 3: True, 4: False, 5: False}
    s = LinearSearch(6, k=4)
    assert run(s, lambda p: alive.get(p, True)) == 1
    assert s.n_rollouts == 5 * 4


def test_300_step_trace_within_the_binary_budget():
    """A 300-step trace becomes at most max_steps pieces and is localized with at
    most k * (ceil(log2 pieces) + 1) rollouts, for every error position."""
    text = "\n\n".join(f"Step {i}: the running total is now {i * 7}." for i in range(300))
    pieces = segment(text, max_steps=32)
    assert len(pieces) <= 32
    m, k = len(pieces), 8
    budget = k * (math.ceil(math.log2(m)) + 1)
    worst = 0
    for error in range(m):
        # a weak policy: alive prefixes succeed only on every third rollout
        s = BinarySearch(m, k=k)
        assert run(s, lambda p, e=error: p <= e, pattern=(False, False, True)) == error
        worst = max(worst, s.n_rollouts)
    assert worst <= budget
    linear = LinearSearch(m, k=k)
    run(linear, lambda p: p <= 10)
    assert worst < linear.n_rollouts / 3


@pytest.mark.parametrize("cls", [BinarySearch, LinearSearch])
def test_a_trace_cut_short_is_probed_to_its_end_not_blamed_at_its_last_step(cls):
    # a truncated trace whose steps are all fine: its full text can still reach the
    # answer, so it has no wrong step (before: the last fragment was the first error)
    s = cls(6, k=4, probe_full=True)
    assert run(s, lambda p: True) == -1
    assert 6 in s.used  # the full trace was probed
    # dead only at the full trace: the last step is the error
    assert run(cls(6, k=4, probe_full=True), lambda p: p < 6) == 5
    for error in range(6):
        assert run(cls(6, k=4, probe_full=True), lambda p, e=error: p <= e) == error
    # a one-step trace cut short: alive through its end
    assert run(cls(1, k=4, probe_full=True), lambda p: True) == -1


def test_binary_finds_a_boundary_confirmed_finds_the_earliest():
    # prefix 2 dead, 3-7 alive again (values are not monotone): linear blames step 1,
    # binary step 7; confirmation probes the prefixes before 7 and agrees with linear
    alive = lambda p: p != 2 and p < 8  # noqa: E731
    assert run(LinearSearch(8, k=4), alive) == 1
    assert run(BinarySearch(8, k=4), alive) == 7
    confirmed = BinarySearch(8, k=4, confirm=True)
    assert run(confirmed, alive) == 1
    assert set(confirmed.used) == set(range(1, 8))  # every prefix before the boundary


@pytest.mark.parametrize("n_steps", [1, 2, 3, 5, 7])
def test_confirmed_binary_gives_linears_label_on_every_value_pattern(n_steps):
    for bits in range(2 ** (n_steps - 1)):
        dead = {p for p in range(1, n_steps) if bits >> (p - 1) & 1}
        alive = lambda p, d=dead: p == 0 or (p not in d and p < n_steps)  # noqa: E731
        linear = LinearSearch(n_steps, k=4)
        confirmed = BinarySearch(n_steps, k=4, confirm=True)
        assert run(confirmed, alive) == run(linear, alive), sorted(dead)
        # with alive prefixes settled at their first success, it never costs more
        assert confirmed.n_rollouts <= linear.n_rollouts + 4  # + the root, probed by both


def test_confirmation_reuses_what_the_search_saw_and_costs_little_when_monotone():
    alive = lambda p: p <= 20  # noqa: E731  (a monotone trace: error at step 20)
    plain, confirmed = BinarySearch(32, k=8), BinarySearch(32, k=8, confirm=True)
    assert run(plain, alive) == run(confirmed, alive) == 20
    # the alive prefixes the search probed are not probed again; each unseen one
    # settles at its first successful rollout
    assert confirmed.n_rollouts - plain.n_rollouts == 20 - len(
        [p for p in plain.used if 1 <= p <= 20]
    )
