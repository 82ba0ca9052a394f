"""The toy task and its exact step checker (pure functions, no models)."""

import random

import pytest

from pipeline.config import Settings
from pipeline.toy.checker import first_error, split_steps
from pipeline.toy.problem_sets import parts
from pipeline.toy.task import (
    LEVELS,
    Level,
    generate,
    make_problem,
    parse_problem,
    reference_solution,
)

PROBLEM = "Start with 17. Add 5. Multiply by 3. Subtract 8. What is the result?"
GOOD = "Add 5: 17 + 5 = 22.\n\nMultiply by 3: 22 * 3 = 66.\n\nSubtract 8: 66 - 8 = 58.\n\nThe answer is \\boxed{58}."


def test_generator_is_deterministic_and_respects_its_knobs():
    for level in LEVELS:
        a, b = generate(level, 200, seed=3), generate(level, 200, seed=3)
        assert a == b
        assert generate(level, 200, seed=4) != a
        for p in a:
            assert len(p.steps) == level.n_ops
            assert all(0 <= v <= level.max_value for v in (p.start, *p.values))
            for op, operand in p.steps:
                assert op in level.ops
                assert operand <= (level.max_addend if op in "+-" else level.max_factor)


def test_only_the_chosen_operators_appear():
    level = Level(4, ops=("+", "-"))
    for p in generate(level, 100, seed=0):
        assert {op for op, _ in p.steps} <= {"+", "-"}


def test_problem_text_round_trips():
    rng = random.Random(0)
    for level in LEVELS:
        p = make_problem(level, rng)
        q = parse_problem(p.text)
        assert (q.start, q.steps, q.values) == (p.start, p.steps, p.values)


def test_reference_solution_format():
    p = parse_problem(PROBLEM)
    assert reference_solution(p) == GOOD
    assert p.answer == 58
    assert split_steps(GOOD)[-1] == "The answer is \\boxed{58}."


def test_reference_solutions_check_clean():
    for level in LEVELS:
        for p in generate(level, 100, seed=1):
            assert first_error(p, reference_solution(p)) == -1


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (GOOD, -1),
        (GOOD.replace("= 22.", "= 23."), 0),  # wrong result
        (GOOD.replace("17 + 5", "18 + 5"), 0),  # wrong value carried in
        (GOOD.replace("Multiply by 3: 22 * 3", "Multiply by 4: 22 * 4"), 1),  # wrong operand
        (GOOD.replace("22 * 3 = 66", "22 + 3 = 66"), 1),  # wrong operator
        (GOOD.replace("66 - 8 = 58", "66 - 8 = 57"), 2),
        (GOOD.replace("\\boxed{58}", "\\boxed{57}"), 3),  # only the answer is wrong
        (GOOD.replace("The answer is \\boxed{58}.", "The answer is 58."), 3),  # missing box
        (GOOD.split("\n\nThe answer")[0], 3),  # stops before the answer
        (GOOD.split("\n\nSubtract")[0], 2),  # a missing step
        ("", 0),
        ("\x00\x01 garbage }{ \\boxed{", 0),
        (GOOD + "\n\nAnd some chatter afterwards.", -1),  # extra text after a correct answer
        (
            "Add 5: 17 + 5 = 22.\n\nAdd 5: 17 + 5 = 22.\n\n" + GOOD.split("\n\n", 1)[1],
            1,
        ),  # a repeated step
        (GOOD.replace("\n\n", "\n\n  \n\n"), -1),  # extra blank lines
        (GOOD.replace("= 22.", "= 22"), -1),  # the period is optional
    ],
)
def test_first_error(text, want):
    assert first_error(PROBLEM, text) == want


def test_a_later_step_consistent_with_an_earlier_mistake_is_not_the_first_error():
    text = "Add 5: 17 + 5 = 23.\n\nMultiply by 3: 23 * 3 = 69.\n\nSubtract 8: 69 - 8 = 61.\n\nThe answer is \\boxed{61}."
    assert first_error(PROBLEM, text) == 0


def test_right_answer_with_a_wrong_step_is_still_flagged():
    # two compensating slips: outcome verification says correct, the checker does not
    text = "Add 5: 17 + 5 = 23.\n\nMultiply by 3: 22 * 3 = 66.\n\nSubtract 8: 66 - 8 = 58.\n\nThe answer is \\boxed{58}."
    assert first_error(PROBLEM, text) == 0


def test_the_default_run_curates_from_train_and_evaluation_uses_test():
    """The test split stays clean for `pitfall eval`: nothing the default run
    curates (and so nothing trained on its export) comes from it."""
    assert Settings().run.inputs == ["data/toy/curate.jsonl"]
    assert Settings().eval.problems == "data/toy/test.jsonl"


def test_shipped_problem_sets_are_disjoint_checkable_and_ingestible(pitfall, store_path):
    import json

    from pipeline.store import Store
    from tests.conftest import REPO

    sets = {
        name: [
            json.loads(line)
            for line in (REPO / "data" / "toy" / f"{name}.jsonl").read_text().splitlines()
        ]
        for name in ("train", "test", "curate", "val")
    }
    assert not {r["problem"] for r in sets["train"]} & {r["problem"] for r in sets["test"]}
    # curate.jsonl (the default run's input) and val.jsonl (tuning) are disjoint parts of train
    assert sets["curate"] == parts(sets["train"])[0] and sets["val"] == parts(sets["train"])[1]
    assert not {r["problem"] for r in sets["curate"]} & {r["problem"] for r in sets["val"]}
    for rows in sets.values():
        assert {r["level"] for r in rows} == {lv.name for lv in LEVELS}
        for r in rows:
            assert first_error(r["problem"], r["solution"]) == -1
            assert str(parse_problem(r["problem"]).answer) == r["answer"]
    res = pitfall("ingest", REPO / "data" / "toy" / "test.jsonl")
    assert res.exit_code == 0
    assert pitfall.ingested() == [("toy/test.jsonl", len(sets["test"]), 0, 0)]
    with Store.reader(store_path) as store:
        levels = store.query(
            "SELECT json_extract_string(meta, '$.level') AS level, count(*) AS n FROM problems GROUP BY 1"
        )
    assert dict(levels.iter_rows()) == {lv.name: 50 for lv in LEVELS}
