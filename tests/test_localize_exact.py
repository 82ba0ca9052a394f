"""The `exact` localization method: the toy checker's first wrong paragraph, mapped
to the segmented step that holds it; problems without a checker are counted."""

from __future__ import annotations

import polars as pl

from pipeline.config import load_settings
from pipeline.localize.exact import CHECKERS, first_error
from pipeline.stages import StageContext
from pipeline.stages import segment as segment_stage
from pipeline.stages.localize import localize
from pipeline.store import Store
from pipeline.toy.checker import first_error as checker_first_error
from pipeline.toy.checker import paragraph_starts, split_steps
from pipeline.verify import VERIFIER

TOY = "Start with 2. Add 3. Multiply by 2. Subtract 4. What is the result?"
RIGHT = (
    "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nSubtract 4: 10 - 4 = 6."
    "\n\nThe answer is \\boxed{6}."
)
WRONG_AT_2 = RIGHT.replace("10 - 4 = 6", "10 - 4 = 7").replace("{6}", "{7}")
STOPS_EARLY = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10."
TRACES = {  # trace -> (problem, completion, verdict)
    "R": (TOY, RIGHT, "correct"),
    "W": (TOY, WRONG_AT_2, "wrong"),
    "S": (TOY, STOPS_EARLY, "wrong"),
    "X": ("What is 6 times 7?", "It is 42.\n\nThe answer is \\boxed{41}.", "wrong"),
}


def test_paragraph_starts_agree_with_split_steps():
    text = "  Add 3: 2 + 3 = 5.\n \n\nMultiply by 2: 5 * 2 = 10.\n\n\nend  "
    assert [text[i:].split("\n")[0].strip() for i in paragraph_starts(text)] == split_steps(text)


def test_a_paragraph_maps_to_the_step_that_holds_it():
    toy = CHECKERS["toy"]
    starts = paragraph_starts(WRONG_AT_2)
    assert checker_first_error(TOY, WRONG_AT_2) == 2
    assert first_error(toy, TOY, WRONG_AT_2, starts) == 2  # one step per paragraph
    merged = [starts[0], starts[2]]  # steps: paragraphs 0-1, then 2-3
    assert first_error(toy, TOY, WRONG_AT_2, merged) == 1
    assert first_error(toy, TOY, RIGHT, merged) == -1
    # a paragraph never written (it stopped at 2 of 4) is the last step's fault
    assert first_error(toy, TOY, STOPS_EARLY, paragraph_starts(STOPS_EARLY)) == 1


def test_exact_labels_toy_traces_and_counts_the_rest(tmp_path):
    path = tmp_path / "s.duckdb"
    settings = load_settings(None, {"store": {"path": path}, "segment": {"min_chars": 30}})
    problems = {p: f"P{i}" for i, p in enumerate(dict.fromkeys(p for p, _, _ in TRACES.values()))}
    with Store.writer(path, command="t") as store:
        store.insert_new(
            "problems",
            pl.DataFrame(
                [
                    {"problem_id": i, "problem": p, "answer": "6", "source": "t"}
                    for p, i in problems.items()
                ]
            ),
        )
        store.insert_new(
            "traces",
            pl.DataFrame(
                [
                    {"trace_id": t, "problem_id": problems[p], "model": "m", "params_id": "p"}
                    | {"sample_index": n, "prompt": "q", "completion": c, "finish_reason": "stop"}
                    for n, (t, (p, c, _)) in enumerate(TRACES.items())
                ]
            ),
        )
        store.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": t, "trace_id": t, "verifier": VERIFIER, "status": v}
                    for t, (_, _, v) in TRACES.items()
                ]
            ),
        )
        segment_stage.run(StageContext(store, settings))
        steps = dict(
            store.query("SELECT trace_id, count(*) AS n FROM steps GROUP BY 1").iter_rows()
        )
        result = localize(StageContext(store, settings), "exact")
        labels = dict(
            store.query(
                "SELECT trace_id, first_error FROM first_errors WHERE method = 'exact'"
            ).iter_rows()
        )
    assert steps["W"] < 4  # min_chars merged the short paragraphs
    assert labels["R"] == -1
    assert labels["W"] == steps["W"] - 1  # the wrong subtraction sits in the last step
    assert "X" not in labels
    assert result.skipped["no step checker for the problem"] == 1
    assert result.detail["labels"] == {"no error": 1, "first error found": 2}
