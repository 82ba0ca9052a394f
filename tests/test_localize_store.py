"""Localization end to end on the toy world: real teacher traces (vLLM on the CPU),
real rollouts, math-verify in worker processes, everything stored and reused."""

from __future__ import annotations

import json

import polars as pl
import pytest

from flows.localize import (
    localize_consensus,
    localize_judge,
    localize_monte_carlo,
    rollout_policy,
    segment_pending,
)
from flows.sample import run_sampling
from pipeline.backends.vllm_backend import VLLMBackend
from pipeline.config import load_settings
from pipeline.store import Store
from pipeline.toy.checker import first_error
from pipeline.verify import VerifyPool
from tests.conftest import TEACHER
from tests.test_sampling import _store_with, rows_of


@pytest.fixture(scope="module")
def toy_store(vllm_teacher, tmp_path_factory):
    """Six hard-ish toy problems, four teacher samples each, verified and segmented."""
    path = tmp_path_factory.mktemp("loc") / "toy.duckdb"
    settings = load_settings(
        None,
        {
            "store": {"path": path},
            "teacher": {"max_tokens": 160},
            "dart": {"strategy": "fixed", "n_fixed": 4, "round_size": 4},
            "localize": {"k": 4, "max_tokens": 120},
        },
    )
    _store_with(path, rows_of("ops5-v99", 3) + rows_of("ops8-v199", 3))
    backend = VLLMBackend(str(TEACHER), llm=vllm_teacher)
    # Keys and rollout seeds include the model's name: recorded as the default
    # config names it, not by this checkout's absolute path, the rollouts (and
    # the accuracy asserted below) are the same wherever the tests run.
    backend.model = "data/models/toy-teacher"
    with Store.writer(path, command="sample") as store:
        run_sampling(store, backend, settings, [])
        segment_pending(store, settings)
    return settings, backend


def _labels(path, method):
    with Store.reader(path) as store:
        return store.query(
            "SELECT f.trace_id, f.first_error, f.n_rollouts, p.problem, t.completion, "
            "v.status FROM first_errors f JOIN traces t USING (trace_id) "
            "JOIN problems p USING (problem_id) JOIN verdicts v USING (trace_id) "
            "WHERE f.method = ? ORDER BY f.trace_id",
            [method],
        )


def _count(path, table):
    with Store.reader(path) as store:
        return store.query(f"SELECT count(*) AS n FROM {table}")["n"][0]


def test_monte_carlo_localizes_stores_and_reuses_rollouts(toy_store):
    settings, backend = toy_store
    path = settings.store.path
    policy = rollout_policy(backend, settings)
    with (
        Store.writer(path, command="loc") as store,
        VerifyPool(2, settings.verify.timeout_s) as pool,
    ):
        binary = localize_monte_carlo(store, "mc-binary", policy, pool, settings)
        assert binary.traces == 24
        assert binary.rollouts_generated == binary.rollouts_used > 0
        rollouts_after_binary = _count(path, "rollouts")
        assert rollouts_after_binary == binary.rollouts_generated

        # a rerun finds every trace localized and pays nothing
        again = localize_monte_carlo(store, "mc-binary", policy, pool, settings)
        assert (again.traces, again.rollouts_generated) == (0, 0)

        # mc-linear probes every prefix, reusing what binary already paid for
        linear = localize_monte_carlo(store, "mc-linear", policy, pool, settings)
        assert linear.rollouts_generated < linear.rollouts_used
        assert _count(path, "rollouts") == rollouts_after_binary + linear.rollouts_generated

        # forgetting the labels (not the rollouts) reproduces them for free
        store.execute("DELETE FROM first_errors WHERE method = 'mc-binary'")
        redo = localize_monte_carlo(store, "mc-binary", policy, pool, settings)
        assert redo.rollouts_generated == 0

    labels = _labels(path, "mc-binary")
    wrong = labels.filter(pl.col("status") != "correct")
    assert wrong.height > 0
    assert (labels.filter(pl.col("status") == "correct")["first_error"] == -1).all()
    truth = [first_error(p, c) for p, c in wrong.select("problem", "completion").iter_rows()]
    predicted = wrong["first_error"].to_list()
    hits = sum(t == p for t, p in zip(truth, predicted, strict=True))
    print(
        f"mc-binary exact on {hits}/{len(truth)} wrong traces",
        list(zip(truth, predicted, strict=False)),
    )
    # the toy teacher is a fair rollout policy (it can also repair a wrong step,
    # which MC then blames on a later one): well above chance, far from perfect
    assert hits / len(truth) >= 0.3
    # step values hold the soft estimates of every probed prefix
    with Store.reader(path) as store:
        values = store.query("SELECT k, n_correct, value FROM step_values")
    assert values.height > 0
    assert ((values["value"] - values["n_correct"] / values["k"]).abs() < 1e-9).all()


def test_judge_and_consensus(toy_store):
    settings, backend = toy_store
    settings.localize.judge_n = 2
    path = settings.store.path
    with Store.writer(path, command="judge") as store:
        judge = localize_judge(store, backend, settings)
        # the toy teacher was never taught to critique: its answers are mostly
        # not an index, and those are recorded as such, not guessed
        assert judge.traces == 24
        with VerifyPool(2, settings.verify.timeout_s) as pool:
            localize_monte_carlo(
                store, "mc-binary", rollout_policy(backend, settings), pool, settings
            )
        consensus = localize_consensus(store, settings)
    rows = _labels(path, "judge")
    details = [json.loads(d) for d in _details(path, "judge")]
    assert all(sum(d["votes"].values()) + d["unparseable"] == 2 for d in details)
    undetermined = rows["first_error"].is_null().sum()
    assert undetermined == sum(1 for d in details if not d["votes"])
    both = _both(path)
    agree = both.filter(pl.col("a") == pl.col("b")).height
    assert consensus.traces == both.height
    assert sum(consensus.labels.values()) == agree == _count_method(path, "consensus")


def _details(path, method):
    with Store.reader(path) as store:
        return store.query(
            "SELECT detail FROM first_errors WHERE method = ? ORDER BY trace_id", [method]
        )["detail"].to_list()


def _both(path):
    with Store.reader(path) as store:
        return store.query(
            "SELECT a.first_error AS a, b.first_error AS b FROM first_errors a "
            "JOIN first_errors b ON a.trace_id = b.trace_id AND b.method = 'judge' "
            "WHERE a.method = 'mc-binary'"
        )


def _count_method(path, method):
    with Store.reader(path) as store:
        return store.query("SELECT count(*) AS n FROM first_errors WHERE method = ?", [method])[
            "n"
        ][0]
