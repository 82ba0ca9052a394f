"""The canned analyses in sql/queries/, on a small store whose every figure is
worked out by hand below. No model and no process: the rows go in through the
Store API, as the stages would write them."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from pipeline.rows import (
    EVAL_PROBLEM_SCHEMA,
    EVAL_SAMPLE_SCHEMA,
    EVAL_SCHEMA,
    FIRST_ERROR_SCHEMA,
    PAIR_SCHEMA,
    PROBLEM_SCHEMA,
    ROLLOUT_SCHEMA,
    STEP_SCHEMA,
    TRACE_SCHEMA,
    VERDICT_SCHEMA,
    eval_problem_key,
    eval_row,
    eval_sample_key,
)
from pipeline.sqlfiles import canned_queries
from pipeline.store import Store
from pipeline.verify import VERIFIER

NEW = (
    "pass_rate_by_level",
    "hardest_unsolved",
    "first_error_positions",
    "cost_per_pair",
    "localization_cost",
    "trace_lengths",
    "eval_models",
)

# problem -> (source, level, gold); P4 has no trace, P6 no gold answer
PROBLEMS = {
    "P1": ("s1", "1", "5"),
    "P2": ("s1", "1", "6"),
    "P3": ("s1", "2", "4"),
    "P4": ("s1", "2", "8"),
    "P7": ("s1", "2", "1"),
    "P5": ("s2", None, "2"),
    "P6": ("s2", None, None),
}
# trace -> (problem, model, completion tokens, steps, verdicts as (verifier, status, extracted))
MV, IMPORTED = VERIFIER, "imported:correctness"
TRACES = {
    "T1a": ("P1", "m", 10, 2, [(MV, "correct", "5")]),
    "T1b": ("P1", "m", 20, 4, [(MV, "wrong", "7")]),
    "T1c": ("P1", "m", 30, 2, [(MV, "timeout", "5")]),
    "T1d": ("P1", "m", 40, 2, []),  # not verified yet
    "T2a": ("P2", "m", 10, 2, [(MV, "wrong", "9")]),
    "T2b": ("P2", "m", 10, 3, [(MV, "wrong", "9")]),
    "T2c": ("P2", "m", 10, 3, [(MV, "wrong", "8")]),
    # math-verify overrules the imported verdict
    "T3a": ("P3", "m", None, 4, [(MV, "wrong", "3"), (IMPORTED, "correct", None)]),
    "T3b": ("P3", "m", None, 2, [(IMPORTED, "correct", None)]),
    "T7a": ("P7", "m", 50, 5, [(MV, "truncated", None)]),
    "T5a": ("P5", "imported:s2", None, 2, [(IMPORTED, "correct", None)]),
    "T6a": ("P6", "imported:s2", None, 2, [(IMPORTED, "wrong", None)]),
}
# (trace, method, first error, rollouts used, their tokens, critic tokens)
LABELS = [
    ("T1a", "mc-binary", -1, 0, 0, None),  # correct: left out of the error figures
    ("T1b", "mc-binary", 1, 6, 60, None),
    ("T2a", "mc-binary", 0, 3, 15, None),
    ("T2b", "mc-binary", None, 8, 40, None),
    ("T3a", "mc-binary", 3, 4, 80, None),
    ("T7a", "mc-binary", -1, 2, 4, None),
    ("T1b", "judge", 2, 0, 0, 100),
    ("T2c", "judge", 1, 0, 0, 50),
]
# trace -> [(policy, count, tokens each)]
ROLLOUTS = {"T1b": [("pA", 6, 10)], "T2a": [("pA", 3, 5)], "T3a": [("pA", 4, 20), ("pB", 2, 1)]}
# (kind, problem, chosen trace, rejected trace)
PAIRS = [
    ("outcome", "P1", "T1a", "T1b"),
    ("outcome", "P3", "T3b", "T3a"),
    ("step", "P1", None, "T1b"),
    ("step", "P3", None, "T3a"),
    ("first-pit", "P1", "T1a", "T1b"),
    ("stepwise", "P1", None, "T1b"),
    ("stepwise", "P2", None, "T2a"),
]
# eval model -> lineage and per problem (samples, correct, truncated)
EVALS = {
    "base": (None, {"E1": (4, 2, 0), "E2": (4, 0, 1)}),
    "ckpt": ({"kind": "redi", "base_model": "base"}, {"E1": (4, 4, 0), "E2": (4, 1, 0)}),
}


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def _fill(store: Store) -> None:
    problems = [
        {
            "problem_id": pid,
            "problem": f"problem {pid}",
            "answer": gold,
            "source": source,
            "meta": json.dumps({"level": level}) if level else None,
        }
        for pid, (source, level, gold) in PROBLEMS.items()
    ]
    traces, verdicts, steps = [], [], []
    for i, (tid, (pid, model, tokens, n_steps, found)) in enumerate(TRACES.items()):
        text = "\n\n".join(f"step {j}" for j in range(n_steps))
        traces.append(
            {"trace_id": tid, "problem_id": pid, "model": model, "params_id": "p"}
            | {"sample_index": i, "prompt": "q", "completion": text}
            | {"completion_tokens": tokens, "origin": "sampled" if tokens else "imported"}
        )
        verdicts += [
            {"verdict_id": f"{tid}:{v}", "trace_id": tid, "verifier": v}
            | {"status": s, "extracted": x}
            for v, s, x in found
        ]
        steps += [
            {"step_id": f"{tid}:{j}", "trace_id": tid, "step_index": j, "text": f"step {j}"}
            for j in range(n_steps)
        ]
    labels = [
        {"first_error_id": f"{tid}:{m}", "trace_id": tid, "method": m, "first_error": e}
        | {"n_rollouts": n, "rollout_tokens": tok}
        | {"detail": json.dumps({"critic_tokens": critic} if critic else {})}
        for tid, m, e, n, tok, critic in LABELS
    ]
    rollouts = [
        {"rollout_id": f"{tid}:{policy}:{i}", "trace_id": tid, "prefix_len": 1}
        | {"policy": policy, "rollout_index": i, "completion": "x", "completion_tokens": each}
        for tid, drawn in ROLLOUTS.items()
        for policy, count, each in drawn
        for i in range(count)
    ]
    pairs = [
        {"pair_id": f"{kind}:{rejected}", "kind": kind, "problem_id": pid, "prompt": "q"}
        | {"chosen": "c", "rejected": "r", "chosen_trace_id": chosen}
        | {"rejected_trace_id": rejected, "meta": "{}"}
        for kind, pid, chosen, rejected in PAIRS
    ]
    for table, rows, schema in (
        ("problems", problems, PROBLEM_SCHEMA),
        ("traces", traces, TRACE_SCHEMA),
        ("verdicts", verdicts, VERDICT_SCHEMA),
        ("steps", steps, STEP_SCHEMA),
        ("first_errors", labels, FIRST_ERROR_SCHEMA),
        ("rollouts", rollouts, ROLLOUT_SCHEMA),
        ("pairs", pairs, PAIR_SCHEMA),
    ):
        store.insert_new(table, _frame(rows, schema))
    store.replace_rows(
        "difficulty",
        pl.DataFrame([{"problem_id": "P2", "n_trials": 3, "n_correct": 0, "status": "unsolved"}]),
    )
    _fill_evals(store)


def _fill_evals(store: Store) -> None:
    evals, problems, samples = [], {}, []
    for model, (lineage, per_problem) in EVALS.items():
        setup = eval_row(model, "hash-" + model, lineage, {"temperature": 1.0})
        evals.append(setup)
        for pid, (n, c, truncated) in per_problem.items():
            problems[pid] = {
                "eval_problem_id": eval_problem_key("set", pid),
                "problem_set": "set",
                "problem_id": pid,
                "problem": pid,
                "answer": "1",
            }
            for j in range(n):
                status = "correct" if j < c else "truncated" if j < c + truncated else "wrong"
                samples.append(
                    {"sample_id": eval_sample_key(setup["eval_id"], pid, j)}
                    | {"eval_id": setup["eval_id"], "problem_id": pid, "sample_index": j}
                    | {"completion": "x", "completion_tokens": 10, "verifier": "v"}
                    | {"status": status}
                )
    store.insert_new("evals", _frame(evals, EVAL_SCHEMA))
    store.insert_new("eval_problems", _frame(list(problems.values()), EVAL_PROBLEM_SCHEMA))
    store.insert_new("eval_samples", _frame(samples, EVAL_SAMPLE_SCHEMA))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, pl.DataFrame]:
    path = tmp_path_factory.mktemp("canned") / "store.duckdb"
    with Store.writer(path, command="test") as store:
        _fill(store)
    reader = Store.reader(path)
    return {name: reader.canned(name) for name in NEW}


def _rows(frame: pl.DataFrame, *columns: str) -> list[tuple]:
    return frame.select(columns).rows()


def test_each_new_query_has_a_one_line_description():
    queries = canned_queries()
    for name in NEW:
        first = queries[name].read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("-- ") and len(first) > 40, name


def test_pass_rate_by_source_and_level(results):
    got = _rows(
        results["pass_rate_by_level"],
        "source",
        "level",
        "problems",
        "sampled",
        "solved",
        "verified",
        "correct",
        "pass_rate",
    )
    assert got == [
        # level 1: T1a of six verified (T1d has no verdict; the timeout counts as a failure)
        ("s1", "1", 2, 2, 1, 6, 1, 0.1667),
        # level 2: P4 has no trace; T3a is wrong by math-verify whatever was imported
        ("s1", "2", 3, 2, 1, 3, 1, 0.3333),
        ("s1", "all", 5, 4, 2, 9, 2, 0.2222),
        ("s2", "all", 2, 2, 1, 2, 1, 0.5),  # no level: only the source's row
    ]


def test_hardest_unsolved(results):
    got = _rows(
        results["hardest_unsolved"],
        "problem_id",
        "level",
        "verified",
        "wrong",
        "truncated_or_no_answer",
        "dart_status",
        "gold",
        "top_wrong_answer",
        "top_wrong_count",
    )
    # P6 is unsolved too but has no gold answer
    assert got == [
        ("P2", "1", 3, 3, 0, "unsolved", "6", "9", 2),
        ("P7", "2", 1, 0, 1, None, "1", None, None),
    ]


def test_first_error_positions(results):
    got = _rows(
        results["first_error_positions"],
        "method",
        "level",
        "labelled",
        "found",
        "no_error",
        "undetermined",
        "at_step_0",
        "mean_step",
        "median_step",
        "relative_position",
        "mean_steps",
    )
    assert got == [
        # T1b step 2 of 4, T2c step 1 of 3: (3/4 + 2/3) / 2
        ("judge", "1", 2, 2, 0, 0, 0, 1.5, 1.5, 0.708, 3.5),
        ("judge", "all", 2, 2, 0, 0, 0, 1.5, 1.5, 0.708, 3.5),
        # T1b step 1 of 4, T2a step 0 of 2, T2b undetermined; T1a is correct: left out
        ("mc-binary", "1", 3, 2, 0, 1, 1, 0.5, 0.5, 0.5, 3.0),
        # T3a step 3 of 4 (its last), T7a truncated with no wrong step
        ("mc-binary", "2", 2, 1, 1, 0, 0, 3.0, 3.0, 1.0, 4.5),
        ("mc-binary", "all", 5, 3, 1, 1, 1, 1.33, 1.0, 0.667, 3.6),
    ]


def test_cost_per_pair(results):
    got = _rows(
        results["cost_per_pair"],
        "kind",
        "pairs",
        "wrong_traces",
        "problems",
        "rollouts",
        "rollout_tokens",
        "rollouts_per_pair",
        "rollout_tokens_per_pair",
        "sampled_tokens_per_pair",
    )
    # P1's traces hold 100 tokens, P2's 30, P3's none (imported)
    assert got == [
        ("first-pit", 1, 1, 1, 6, 60, 6.0, 60.0, 100.0),
        # T1b was rolled out, but outcome pairs do not need it
        ("outcome", 2, 2, 2, 0, 0, 0.0, 0.0, 50.0),
        # T1b: 6 x 10 tokens; T3a: 4 x 20 under one policy and 2 x 1 under another
        ("step", 2, 2, 2, 12, 142, 6.0, 71.0, 50.0),
        ("stepwise", 2, 2, 2, 9, 75, 4.5, 37.5, 65.0),
    ]


def test_localization_cost(results):
    got = _rows(
        results["localization_cost"],
        "method",
        "labelled",
        "not_correct",
        "errors_found",
        "rollouts",
        "rollout_tokens",
        "critic_tokens",
        "rollouts_per_trace",
        "tokens_per_trace",
        "tokens_per_error_found",
    )
    assert got == [
        ("judge", 2, 2, 2, 0, 0, 150, 0.0, 75.0, 75.0),
        # 6 + 3 + 8 + 4 + 2 rollouts and 199 tokens over five traces, three errors
        ("mc-binary", 6, 5, 3, 23, 199, 0, 4.6, 39.8, 66.3),
    ]


def test_trace_lengths(results):
    got = _rows(
        results["trace_lengths"],
        "model",
        "outcome",
        "traces",
        "p50_tokens",
        "p90_tokens",
        "max_tokens",
        "mean_steps",
    )
    assert got == [
        ("imported:s2", "correct", 1, None, None, None, 2.0),
        ("imported:s2", "wrong", 1, None, None, None, 2.0),
        ("m", "correct", 2, 10.0, 10.0, 10, 2.0),  # T3b has no token count
        ("m", "timeout", 1, 30.0, 30.0, 30, 2.0),
        ("m", "truncated", 1, 50.0, 50.0, 50, 5.0),
        ("m", "unverified", 1, 40.0, 40.0, 40, 2.0),
        # 10, 10, 10, 20 (T3a none): p90 interpolates 10 + 0.7 * (20 - 10)
        ("m", "wrong", 5, 10.0, 17.0, 20, 3.2),
    ]


def test_eval_models(results):
    got = _rows(
        results["eval_models"],
        "model",
        "trained_as",
        "base_model",
        "temperature",
        "problem_set",
        "problems",
        "samples",
        "pass@1",
        "mean_tokens",
        "truncated_share",
    )
    assert got == [
        ("ckpt", "redi", "base", 1.0, "set", 2, 8, 0.625, 10.0, 0.0),
        ("base", None, None, 1.0, "set", 2, 8, 0.25, 10.0, 0.125),
    ]
    se = dict(_rows(results["eval_models"], "model", "se@1"))
    # sample standard deviation of the per-problem pass@1 over sqrt(problems)
    assert se["ckpt"] == round(math.sqrt((1 - 0.625) ** 2 * 2) / math.sqrt(2), 4)
    assert se["base"] == round(math.sqrt(0.25**2 * 2) / math.sqrt(2), 4)


def test_pass_rate_per_problem_counts_each_trace_once(tmp_path):
    """T3a has a math-verify and an imported verdict: one trace, judged wrong."""
    path = tmp_path / "store.duckdb"
    with Store.writer(path, command="test") as store:
        _fill(store)
    with Store.reader(path) as reader:
        rows = {r["problem_id"]: r for r in reader.canned("pass_rate_per_problem").to_dicts()}
    assert (rows["P3"]["verified"], rows["P3"]["correct"]) == (2, 1)
    assert rows["P1"]["verified"] == 3  # T1d has no verdict yet
