"""Answer extraction, the verification pool, and the reference-solution checks on real data."""

import os
import time

import polars as pl
import pytest

from pipeline.verify import VerifyPool, extract_answer, verdict_rows
from pipeline.verify_pool import STALL_FACTOR
from tests import leftovers
from tests.conftest import GSM8K, MATH500


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\{2, 3\\}}", "\\{2, 3\\}"),
        ("Thus the final answer is 42.", "42"),
        ("The answer is: $7$\n", "7"),
        ("we get 3, then 1,250 apples", "1250"),
        ("no numbers at all", None),
        ("\\boxed{unbalanced", None),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want


def test_extract_answer_without_fallback():
    assert extract_answer("we get 3", fallback="none") is None


def frame(rows):
    return pl.DataFrame(
        rows, schema=["trace_id", "completion", "finish_reason", "answer"], orient="row"
    )


@pytest.mark.slow
def test_statuses_and_dedupe():
    traces = frame(
        [
            ("t1", "so \\boxed{4}", "stop", "4"),
            ("t2", "so \\boxed{2+2}", "stop", "4"),
            ("t3", "so \\boxed{5}", "stop", "4"),
            ("t4", "so \\boxed{4}", "length", "4"),  # cut at max_tokens: truncated whatever it says
            ("t5", "I give up.", "stop", "4"),
            ("t6", "so \\boxed{4}", "stop", "4"),  # same (gold, answer) as t1: verified once
            ("t7", "so \\boxed{" + "9" * 5000 + "}", "stop", "4"),
        ]
    )
    with VerifyPool(workers=2, timeout_s=10) as pool:
        out = verdict_rows(traces, pool)
    assert dict(zip(out["trace_id"], out["status"], strict=True)) == {
        "t1": "correct",
        "t2": "correct",
        "t3": "wrong",
        "t4": "truncated",
        "t5": "no_answer",
        "t6": "correct",
        "t7": "no_answer",
    }
    assert out["verdict_id"].n_unique() == 7


@pytest.mark.slow
def test_pathological_answers_cannot_stall_the_pool():
    timeout = 2.0
    bad = frame(
        [
            ("nested", "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}", "stop", "1"),
            ("tower", "\\boxed{2^{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}}", "stop", "2"),
            ("huge", "\\boxed{" + "x" * 1_000_000 + "}", "stop", "3"),
            ("unbalanced", "so \\boxed{\\frac{1}{2 and 7", "stop", "4"),
            (
                "python",
                "The answer is __import__('os').system('touch /tmp/pitfall-pwned')",
                "stop",
                "5",
            ),
        ]
    )
    good = frame([(f"g{i}", f"so \\boxed{{{i}}}", "stop", str(i)) for i in range(20)])
    with VerifyPool(workers=2, timeout_s=timeout) as pool:
        t0 = time.monotonic()
        out = verdict_rows(pl.concat([bad, good]), pool)
        elapsed = time.monotonic() - t0
        workers = pool.pids
        assert all(leftovers.alive(p) for p in workers)
    time.sleep(0.5)
    assert not any(leftovers.alive(p) for p in workers)  # nothing left hanging after close
    status = dict(zip(out["trace_id"], out["status"], strict=True))
    assert {k: status[k] for k in bad["trace_id"]} == {
        "nested": "no_answer",
        "tower": "timeout",
        "huge": "no_answer",
        "unbalanced": "no_answer",
        "python": "no_answer",
    }
    assert (out.filter(pl.col("trace_id").str.starts_with("g"))["status"] == "correct").all()
    # the tower used its CPU budget twice (a retry on a fresh worker), and no
    # more than the stall limit by the clock even on a busy machine
    assert elapsed < 2 * STALL_FACTOR * timeout + 10
    assert not os.path.exists("/tmp/pitfall-pwned")  # model text is never run as code


@pytest.mark.slow
def test_math500_reference_solutions_verify(pitfall):
    pitfall("ingest", MATH500, "--preset", "math")
    pitfall("import-traces", MATH500, "--preset", "math", "--generations-col", "solution")
    pitfall("verify")
    correct = pitfall.summary("verify")["detail"]["verdicts"]["correct"]
    assert correct >= 495  # at least 99%; it is 500/500 with math-verify 0.9
    pitfall("verify")  # nothing left to do
    assert pitfall.summary("verify")["detail"]["verdicts"] == {}


@pytest.mark.slow
def test_gsm8k_reference_answers_verify(pitfall, store_path):
    from pipeline.store import Store

    pitfall("import-traces", GSM8K, "--preset", "gsm8k", "--generations-col", "answer")
    pitfall("verify")
    with Store.reader(store_path) as store:
        statuses = dict(store.query("SELECT status, count(*) FROM verdicts GROUP BY 1").iter_rows())
    assert statuses == {"correct": 1319}


def test_import_keeps_given_correctness_as_verdicts(tmp_path, pitfall, store_path):
    import json

    from pipeline.store import Store

    path = tmp_path / "raw.jsonl"
    path.write_text(
        json.dumps(
            {
                "problem": "What is 2 + 2?",
                "answer": "4",
                "generations": ["2 + 2 = \\boxed{4}", "2 + 2 = \\boxed{5}"],
                "correctness_math_verify": [True, False],
            }
        )
        + "\n"
        + json.dumps({"problem": "What is 1 + 1?", "answer": "2", "generations": 7})
        + "\n"
    )
    pitfall("import-traces", path, "--correctness-col", "correctness_math_verify")
    (counts,) = pitfall.summary("import-traces")["detail"]["sources"]
    assert (counts["traces new"], counts["verdicts new"], counts["quarantined"]) == (2, 2, 1)
    with Store.reader(store_path) as store:
        v = store.query(
            "SELECT t.sample_index, v.status FROM verdicts v JOIN traces t USING (trace_id) ORDER BY 1"
        )
        q = store.query("SELECT reason FROM quarantine")["reason"].to_list()
    assert v.rows() == [(0, "correct"), (1, "wrong")]
    assert q == ["generations column 'generations' holds int, not text or a list of text"]
