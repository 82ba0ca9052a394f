"""Step segmentation: modes, offsets, merging of fragments, the token budget."""

import itertools

import pytest

from pipeline.segment import count_tokens, given_steps, prefix_text, segment, segment_traces
from pipeline.toy.task import LEVELS, generate, reference_solution


def texts(text, steps):
    return [text[s.start : s.end] for s in steps]


def test_blank_lines_split_and_offsets_map_back():
    text = "First we add.\n\nThen we multiply by 3.\n  \n\nThe answer is \\boxed{9}.\n"
    steps = segment(text)
    assert texts(text, steps) == [
        "First we add.",
        "Then we multiply by 3.",
        "The answer is \\boxed{9}.",
    ]
    # a prefix is the exact trace text before the next step, separators kept
    starts = [s.start for s in steps]
    assert prefix_text(text, starts, 1) == "First we add.\n\n"
    assert prefix_text(text, starts, 2) == "First we add.\n\nThen we multiply by 3.\n  \n\n"
    assert prefix_text(text, starts, 3) == text


def test_toy_reference_solution_is_one_step_per_operation_plus_the_answer():
    problem = generate(LEVELS[4], 1, seed=7)[0]  # five operations
    solution = reference_solution(problem)
    steps = segment(solution)
    assert len(steps) == 6
    assert texts(solution, steps)[-1].startswith("The answer is")


def test_step_markers():
    text = "Step 1: add 2.\nStill step one, longer.\nStep 2: multiply by 3.\n**Step 3:** done, 42."
    assert texts(text, segment(text, "markers")) == [
        "Step 1: add 2.\nStill step one, longer.",
        "Step 2: multiply by 3.",
        "**Step 3:** done, 42.",
    ]
    # text before the first marker is a step of its own
    assert texts(
        "Let us see.\nStep 1: x = 2 here.", segment("Let us see.\nStep 1: x = 2 here.", "markers")
    ) == [
        "Let us see.",
        "Step 1: x = 2 here.",
    ]


def test_short_fragments_join_the_next_step_and_a_short_tail_joins_the_last():
    text = "Wait,\n\nthe sum is 4 + 5 = 9.\n\nSo:\n\n9 times 2 is 18, done.\n\nOk."
    assert texts(text, segment(text, min_chars=10)) == [
        "Wait,\n\nthe sum is 4 + 5 = 9.",
        "So:\n\n9 times 2 is 18, done.\n\nOk.",
    ]
    assert len(segment(text, min_chars=0)) == 5


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="segmentation mode"):
        segment("a\n\nb", "sentences")


def test_long_trace_is_cut_into_at_most_max_steps_pieces_of_similar_length():
    paragraphs = [f"Step value {i}: " + "word " * (3 + i % 7) for i in range(300)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    steps = segment(text, max_steps=32)
    assert len(steps) == 32
    # pieces cover the whole trace, in order, without overlap
    assert steps[0].start == 0 and steps[-1].end == len(text)
    assert all(a.end < b.start for a, b in itertools.pairwise(steps))
    sizes = [s.n_tokens for s in steps]
    assert max(sizes) <= 1.5 * (sum(sizes) / len(sizes))
    assert sum(count_tokens(p) for p in paragraphs) == sum(sizes)


def test_given_lists_are_kept_as_given():
    given = ["a", "Wait,", "b is 2"]  # short items are not merged: the labels index them
    text, steps = given_steps(given)
    assert text == "a\n\nWait,\n\nb is 2"
    assert texts(text, steps) == given


def test_segment_traces_rows():
    import polars as pl

    frame = segment_traces(
        pl.DataFrame(
            {
                "trace_id": ["t1", "t2"],
                "completion": ["one step here", "x is 1 so far.\n\ny is 22 at the end."],
            }
        )
    )
    assert frame["trace_id"].to_list() == ["t1", "t2", "t2"]
    assert frame["step_index"].to_list() == [0, 0, 1]
    assert frame["step_id"].n_unique() == 3
