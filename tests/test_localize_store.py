"""Localization end to end on the toy world: real teacher traces (vLLM on the CPU),
real rollouts, math-verify in worker processes, everything stored and reused."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.backends.vllm_backend import VLLMBackend
from pipeline.config import load_settings
from pipeline.stages import StageContext
from pipeline.stages import sample as sample_stage
from pipeline.stages import segment as segment_stage
from pipeline.stages.localize import localize
from pipeline.store import Store
from pipeline.toy.checker import first_error
from tests.conftest import TEACHER
from tests.test_sampling import _store_with, rows_of

pytestmark = pytest.mark.slow  # the toy teacher on vLLM, verification workers


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
    with (
        Store.writer(path, command="sample") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        sample_stage.run(ctx)
        segment_stage.run(ctx)
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


def _settled(path) -> dict[str, int]:
    """Traces per verdict."""
    with Store.reader(path) as store:
        return dict(store.query("SELECT status, count(*) FROM verdicts GROUP BY 1").iter_rows())


def _count(path, table):
    with Store.reader(path) as store:
        return store.query(f"SELECT count(*) AS n FROM {table}")["n"][0]


def test_monte_carlo_localizes_stores_and_reuses_rollouts(toy_store):
    settings, backend = toy_store
    path = settings.store.path
    with (
        Store.writer(path, command="loc") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        binary = localize(ctx, "mc-binary")
        # the 24 traces, less those cut at max_tokens or without an answer (counted)
        settled = _settled(path)
        assert binary.rows_in == sum(settled.get(s, 0) for s in ("correct", "wrong"))
        assert binary.skipped.get("truncated (not localized)", 0) == settled.get("truncated", 0)
        assert sum(settled.values()) == 24
        assert binary.rollouts == binary.detail["rollouts_used"] > 0
        rollouts_after_binary = _count(path, "rollouts")
        assert rollouts_after_binary == binary.rollouts

        # a rerun finds every trace localized and pays nothing
        again = localize(ctx, "mc-binary")
        assert (again.rows_in, again.rollouts) == (0, 0)

        # mc-linear probes every prefix, reusing what binary already paid for
        linear = localize(ctx, "mc-linear")
        assert linear.rollouts < linear.detail["rollouts_used"]
        assert _count(path, "rollouts") == rollouts_after_binary + linear.rollouts

        # forgetting the labels (not the rollouts) reproduces them for free
        store.execute("DELETE FROM first_errors WHERE method = 'mc-binary'")
        redo = localize(ctx, "mc-binary")
        assert redo.rollouts == 0

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
    with (
        Store.writer(path, command="judge") as store,
        StageContext(store, settings, teacher=backend) as ctx,
    ):
        judge = localize(ctx, "judge")
        # the toy teacher was never taught to critique: its answers are mostly
        # not an index, and those are recorded as such, not guessed
        settled = _settled(path)
        assert judge.rows_in == sum(settled.get(s, 0) for s in ("correct", "wrong"))
        localize(ctx, "mc-binary")
        consensus = localize(ctx, "consensus")
    rows = _labels(path, "judge")
    details = [json.loads(d) for d in _details(path, "judge")]
    assert all(sum(d["votes"].values()) + d["unparseable"] == 2 for d in details)
    undetermined = rows["first_error"].is_null().sum()
    assert undetermined == sum(1 for d in details if not d["votes"])
    both = _both(path)
    agree = both.filter(pl.col("a") == pl.col("b")).height
    assert consensus.rows_in == both.height
    assert sum(consensus.detail["labels"].values()) == agree == _count_method(path, "consensus")


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


class ScriptedPolicy:
    """Continues every prefix with the text planted for it (a stand-in for a model:
    what is checked here is how a continuation is credited, not how it is made)."""

    model = "scripted"

    def __init__(self, continuations: dict[int, str]):
        self.continuations = continuations

    def generate(self, requests, params):
        from pipeline.sampling import Completion

        return [
            [Completion(self.continuations[len(r.prompt)], "stop", 1, 1, 0.0)] for r in requests
        ]

    def render(self, problem, template):
        return problem


def test_a_rollout_is_credited_only_with_its_own_answer():
    """The prefix's numbers are not the rollout's answer: an empty or answerless
    continuation after a prefix ending in the gold number reaches nothing."""
    from pipeline.localize.rollouts import Policy, Target, generate_rollouts
    from pipeline.sampling import SamplingParams
    from pipeline.verify import VerifyPool

    trace = "Add 5: 7 + 5 = 12.\n\nSo x = 12.\n\nThe answer is \\boxed{12}."
    starts = [0, trace.index("So"), trace.index("The answer")]
    target = Target("T", "Q: ", trace, starts, "12")
    prompt_len = {p: len("Q: " + trace[: starts[p]]) for p in (1, 2)}
    cases = {  # (prefix length, continuation) -> reached the answer
        (1, ""): False,
        (1, "That is all."): False,
        (2, ""): False,
        (2, "Done, the result is above."): False,
        (1, "So x = 12 and \\boxed{12}."): True,
        (2, "The answer is 12."): True,
        (2, "which leaves 12"): True,  # the last number, but inside the continuation
    }
    with VerifyPool(workers=1, timeout_s=10) as pool:
        for (p, text), want in cases.items():
            policy = Policy(
                ScriptedPolicy({prompt_len[p]: text}), SamplingParams(1.0, 1.0, 64, 0, "raw")
            )
            rows = generate_rollouts(policy, [(target, p, 0)], pool, "last_number")
            assert rows["correct"].to_list() == [want], (p, text)
