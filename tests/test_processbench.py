"""ProcessBench through the `annotated` path, and the ProcessBench metric itself."""

from __future__ import annotations

import json

import pytest

from pipeline.metrics import processbench_f1
from pipeline.store import Store
from tests.conftest import BENCHMARKS

PROCESSBENCH = BENCHMARKS / "processbench"
SUBSETS = {"gsm8k": 400, "math": 1000, "olympiadbench": 1000, "omnimath": 1000}


def test_metric_on_a_hand_made_prediction_set():
    labels = [-1, -1, -1, -1, 2, 0, 3, 1, 1]
    preds = [-1, -1, 2, None, 2, 0, 1, None, -1]
    score = processbench_f1(labels, preds)
    # all-correct samples: 2 of 4 predicted -1; erroneous: 2 of 5 exact
    assert (score.n_correct, score.n_error) == (4, 5)
    assert score.acc_correct == pytest.approx(50.0)
    assert score.acc_error == pytest.approx(40.0)
    assert score.f1 == pytest.approx(2 * 50 * 40 / 90)
    assert processbench_f1([0, -1], [0, -1]).f1 == 100.0
    assert processbench_f1([0, -1], [None, None]).f1 == 0.0
    with pytest.raises(ValueError):
        processbench_f1([0], [])


def test_all_processbench_cases_import_as_given_and_score_100(pitfall, store_path):
    files = [PROCESSBENCH / f"{name}.json" for name in SUBSETS]
    pitfall(
        "import-traces",
        *files,
        "--preset",
        "processbench",
        "--steps-col",
        "steps",
        "--label-col",
        "label",
        "--correctness-col",
        "final_answer_correct",
        "--model-col",
        "generator",
    )
    with Store.reader(store_path) as store:
        counts = store.query(
            "SELECT p.source, count(DISTINCT t.trace_id) AS traces, count(f.trace_id) AS labels "
            "FROM traces t JOIN problems p USING (problem_id) "
            "LEFT JOIN first_errors f ON f.trace_id = t.trace_id AND f.method = 'annotated' "
            "GROUP BY 1 ORDER BY 1"
        )
        steps = store.query(
            "SELECT p.source_id, list(s.text ORDER BY s.step_index) AS steps, "
            "any_value(f.first_error) AS label "
            "FROM steps s JOIN traces t USING (trace_id) JOIN problems p USING (problem_id) "
            "JOIN first_errors f ON f.trace_id = t.trace_id AND f.method = 'annotated' "
            "WHERE t.model = ? AND p.source_id = ? GROUP BY 1",
            ["Qwen2-7B-Instruct", "gsm8k-0"],
        )
        missing_gold = store.query("SELECT count(*) AS n FROM problems WHERE answer IS NOT NULL")
    assert dict(counts.select("source", "traces").iter_rows()) == {
        f"processbench/{name}.json": n for name, n in SUBSETS.items()
    }
    assert (counts["labels"] == counts["traces"]).all()
    assert missing_gold["n"][0] == 0  # ProcessBench has no gold answers; none invented
    # the given step list is kept exactly, and the label indexes it
    case = json.loads((PROCESSBENCH / "gsm8k.json").read_text())[0]
    assert steps["steps"][0].to_list() == case["steps"]
    assert steps["label"][0] == case["label"]

    result = pitfall("localize-eval", "--method", "annotated", "--truth", "annotated", "--json")
    scores = {row["source"]: row for row in map(json.loads, result.output.splitlines())}
    assert set(scores) == {f"processbench/{name}.json" for name in SUBSETS} | {"all"}
    assert all(row["f1"] == 100.0 for row in scores.values())
    assert scores["processbench/gsm8k.json"]["n_correct"] == 193  # label -1, per SOURCE.md
    assert scores["all"]["n_error"] + scores["all"]["n_correct"] == 3400
    # nothing to verify or sample: no gold answers
    pitfall("verify")
    assert pitfall.summary("verify")["rows_out"] == 0
