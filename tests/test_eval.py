"""pitfall eval: pass@k tables (Python and the canned SQL agree), model identity,
keys, bad input, and on the toy teacher: figures within noise of its model card,
incremental reruns, and no eval sample in any curation table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import load_settings
from pipeline.evaluation import LINEAGE_FILE, identify, pass_at_k_table
from pipeline.rows import (
    EVAL_PROBLEM_SCHEMA,
    EVAL_SAMPLE_SCHEMA,
    EVAL_SCHEMA,
    eval_key,
    eval_problem_key,
    eval_row,
    eval_sample_key,
)
from pipeline.sqlfiles import sql_dir
from pipeline.store import Store
from tests.conftest import REPO, TEACHER, Pitfall

STUDENT = REPO / "data" / "models" / "toy-student"
TOY_TEST = REPO / "data" / "toy" / "test.jsonl"


def _fill(store: Store, counts: dict[str, list[tuple[str, int, int]]]) -> None:
    """Evaluations with (level, n, c) per problem, written as eval rows."""
    problems, samples, evals = [], [], []
    for model, rows in counts.items():
        setup = eval_row(model, "hash-" + model, None, {"temperature": 1.0})
        evals.append(setup)
        for i, (level, n, c) in enumerate(rows):
            pid = f"P{i}"
            problems.append(
                {
                    "eval_problem_id": eval_problem_key("set", pid),
                    "problem_set": "set",
                    "problem_id": pid,
                    "problem": f"problem {i}",
                    "answer": str(i),
                    "level": level,
                }
            )
            for j in range(n):
                samples.append(
                    {
                        "sample_id": eval_sample_key(setup["eval_id"], pid, j),
                        "eval_id": setup["eval_id"],
                        "problem_id": pid,
                        "sample_index": j,
                        "completion": "x",
                        "finish_reason": "stop",
                        "completion_tokens": 1,
                        "verifier": "v",
                        "status": "correct" if j < c else "wrong",
                        "extracted": None,
                    }
                )
    store.insert_new("evals", pl.DataFrame(evals, schema=EVAL_SCHEMA))
    store.insert_new("eval_problems", pl.DataFrame(problems, schema=EVAL_PROBLEM_SCHEMA))
    store.insert_new("eval_samples", pl.DataFrame(samples, schema=EVAL_SAMPLE_SCHEMA))


def test_the_canned_query_gives_the_same_pass_at_k_as_python(store_path):
    rows = [("easy", 8, 8), ("easy", 8, 5), ("easy", 8, 0), ("hard", 8, 1), ("hard", 8, 2)]
    with Store.writer(store_path, command="test") as store:
        _fill(store, {"a": rows, "b": [(lvl, n, n - c) for lvl, n, c in rows]})
        python = pass_at_k_table(store.stage("eval_counts", {"sets": ["set"]}), [1, 4, 8])
        sql = store.canned("eval_pass_at_k")
    assert python.height == sql.height == 6  # 2 models x (2 levels + all)
    joined = python.join(sql, on=["eval_id", "level"], suffix="_sql")
    assert joined.height == 6
    for k in (1, 4, 8):
        for col in (f"pass@{k}", f"se@{k}"):
            assert joined[col].to_list() == pytest.approx(joined[f"{col}_sql"].to_list())
    # by hand: model a, level easy, pass@1 = (1 + 5/8 + 0) / 3
    a_easy = python.filter((pl.col("model") == "a") & (pl.col("level") == "easy")).row(
        0, named=True
    )
    assert a_easy["pass@1"] == pytest.approx((1 + 5 / 8 + 0) / 3)
    assert a_easy["pass@8"] == pytest.approx(2 / 3)  # n = k: solved at least once


def test_pass_at_k_is_null_where_a_problem_has_fewer_samples(store_path):
    with Store.writer(store_path, command="test") as store:
        _fill(store, {"a": [("x", 8, 3), ("x", 4, 1)]})
        python = pass_at_k_table(store.stage("eval_counts", {"sets": ["set"]}), [1, 4, 8])
        sql = store.canned("eval_pass_at_k")
    for table in (python, sql):
        row = table.filter(pl.col("level") == "all").row(0, named=True)
        assert row["pass@4"] is not None
        assert row["pass@8"] is None  # not a mean over the one problem that has 8


def test_an_evaluation_counts_under_a_set_only_over_that_sets_problems(store_path):
    """Model a sampled problems P0 and P1 of "set"; "wider" holds them and one more,
    "narrow" only P0. Under narrow, a's figures are P0's; under wider, pass@k is
    blank (P2 has no sample), never the mean over the two it happens to have."""
    with Store.writer(store_path, command="test") as store:
        _fill(store, {"a": [("x", 4, 4), ("x", 4, 0)]})
        extra = [("wider", "P0"), ("wider", "P1"), ("wider", "P2"), ("narrow", "P0")]
        store.insert_new(
            "eval_problems",
            pl.DataFrame(
                [
                    {"eval_problem_id": eval_problem_key(s, p), "problem_set": s,
                     "problem_id": p, "problem": p, "answer": "1", "level": "x"}
                    for s, p in extra
                ],
                schema=EVAL_PROBLEM_SCHEMA,
            ),
        )  # fmt: skip
        python = pass_at_k_table(
            store.stage("eval_counts", {"sets": ["set", "wider", "narrow"]}), [1, 4]
        )
        sql = store.canned("eval_pass_at_k")
    for table in (python, sql):
        overall = {r["problem_set"]: r for r in table.filter(pl.col("level") == "all").to_dicts()}
        assert overall["set"]["pass@1"] == pytest.approx(0.5)
        assert overall["narrow"]["problems"] == 1 and overall["narrow"]["pass@1"] == 1.0
        assert overall["wider"]["problems"] == 3 and overall["wider"]["pass@1"] is None


def test_a_model_is_its_files_not_its_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(STUDENT, a)
    shutil.copytree(STUDENT, b)
    assert identify(str(a)).fingerprint == identify(str(b)).fingerprint
    weights = b / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert identify(str(a)).fingerprint != identify(str(b)).fingerprint
    (a / LINEAGE_FILE).write_text(json.dumps({"kind": "redi", "base_model": "x"}))
    assert identify(str(a)).lineage == {"kind": "redi", "base_model": "x"}
    assert identify("org/some-model").fingerprint == "hub:org/some-model"


def test_eval_keys():
    params = {"temperature": 1.0, "seed": 0}
    one = eval_row("path/one", "F", None, params)
    # the same files under another path are the same evaluation; other params are not
    assert one["eval_id"] == eval_row("path/two", "F", None, params)["eval_id"]
    assert one["eval_id"] != eval_row("path/one", "F", None, {**params, "seed": 1})["eval_id"]
    assert one["eval_id"] == eval_key("F", params)
    keys = {eval_sample_key(one["eval_id"], "P", j) for j in range(8)}
    assert len(keys) == 8
    assert eval_problem_key("s1", "P") != eval_problem_key("s2", "P")


def test_no_curation_query_reads_the_eval_tables():
    for path in (sql_dir() / "stages").glob("*.sql"):
        if not path.stem.startswith("eval_"):
            assert "eval_" not in path.read_text(), path.name
    assert "eval_" not in (sql_dir() / "macros.sql").read_text().split("pass_at_k")[0]


def test_bad_eval_input_is_one_line(store_path):
    pitfall = Pitfall(store_path)
    no_model = pitfall("eval", ok=False)
    assert no_model.exit_code == 2
    assert "--model" in no_model.output
    nothing = pitfall("eval", "--model", str(TEACHER), "--problems", "no/such.jsonl", ok=False)
    assert nothing.exit_code == 2
    assert "no/such.jsonl: no such problem file" in " ".join(nothing.output.split())
    bad_k = pitfall("eval", "--model", str(TEACHER), "--k", "1,x", ok=False)
    assert bad_k.exit_code == 2
    assert pitfall("eval", "--compare", ok=False).exit_code == 2  # nothing evaluated yet


# ------------------------------------------------------ on the toy teacher

# The toy teacher's pass@1 at T = 1.0 per level, from data/models/README.md
# (exact checker: every step and the answer right; math-verify checks only the
# answer, so it may count a few more).
CARD = {
    "ops1-v99": 0.96,
    "ops2-v99": 0.92,
    "ops3-v99": 0.85,
    "ops4-v99": 0.82,
    "ops5-v99": 0.775,
    "ops8-v199": 0.21,
}


def _toy_subset(path: Path, every: int) -> Path:
    lines = TOY_TEST.read_text().splitlines()[::every]
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings(**eval_):
    return load_settings(
        None,
        {
            "teacher": {"model": str(TEACHER), "max_tokens": 160},
            "verify": {"workers": 2},
            "eval": {"max_tokens": 160, **eval_},
        },
    )


def _evaluate(store_path: Path, problems: Path, backend, **eval_):
    from pipeline.ingest import column_map
    from pipeline.readers import read_file
    from pipeline.stages import Scope, Source, StageContext
    from pipeline.stages import evaluate as eval_stage

    source = Source("toy/eval", lambda: read_file(problems), column_map())
    with (
        Store.writer(store_path, command="eval") as store,
        StageContext(
            store,
            _settings(**eval_),
            scope=Scope(inputs=(source,), model=str(TEACHER)),
            teacher=backend,
        ) as ctx,
    ):
        return eval_stage.run(ctx)


@pytest.mark.slow
def test_eval_of_the_toy_teacher_matches_its_card_and_reruns_sample_nothing(vllm_teacher, tmp_path):
    from pipeline.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(TEACHER), llm=vllm_teacher)
    problems = _toy_subset(tmp_path / "fifty.jsonl", 6)  # 50 problems, 8 or 9 per level
    store_path = tmp_path / "eval.duckdb"
    first = _evaluate(store_path, problems, backend, n=8)
    assert (first.rows_in, first.rows_out) == (50, 400)
    table = pl.DataFrame(first.detail["pass_at_k"])
    print(table)
    overall = table.filter(pl.col("level") == "all").row(0, named=True)
    with Store.reader(store_path) as store:
        levels = store.query("SELECT level, count(*) AS n FROM eval_problems GROUP BY level")
    expected = sum(CARD[lv] * n for lv, n in levels.iter_rows()) / 50
    # within noise: three standard errors, and a few points for right answers
    # reached through a wrong step (the card's checker fails those)
    assert expected - 3 * overall["se@1"] <= overall["pass@1"]
    assert overall["pass@1"] <= expected + 3 * overall["se@1"] + 0.05
    assert overall["pass@8"] >= overall["pass@4"] >= overall["pass@1"]
    again = _evaluate(store_path, problems, backend, n=8)
    assert (again.rows_in, again.rows_out, again.tokens) == (0, 0, 0)
    assert again.detail["pass_at_k"] == first.detail["pass_at_k"]
    more = _evaluate(store_path, problems, backend, n=10)
    assert (more.rows_in, more.rows_out) == (50, 100)  # only samples 8 and 9
    with Store.reader(store_path) as store:
        sql = store.canned("eval_pass_at_k").filter(pl.col("level") == "all")
    assert sql["pass@1"][0] == pytest.approx(
        pl.DataFrame(more.detail["pass_at_k"]).filter(pl.col("level") == "all")["pass@1"][0]
    )


@pytest.mark.slow
def test_a_curate_run_after_an_eval_uses_none_of_its_samples(vllm_teacher, tmp_path):
    """Evaluate the teacher with the teacher's own sampling setup (so an eval
    sample equals the trace sampling would draw), then curate; the curation
    tables must be exactly those of the same curation on a store never evaluated."""
    from pipeline.backends.vllm_backend import VLLMBackend
    from pipeline.ingest import column_map
    from pipeline.readers import read_file
    from pipeline.stages import Scope, Source, StageContext, run_stage

    backend = VLLMBackend(str(TEACHER), llm=vllm_teacher)
    problems = _toy_subset(tmp_path / "some.jsonl", 25)  # 12 problems, 2 per level
    teacher_like = {"temperature": 1.0, "seed": 0, "template": "chat"}
    evaluated, fresh = tmp_path / "evaluated.duckdb", tmp_path / "fresh.duckdb"
    _evaluate(evaluated, problems, backend, n=4, **teacher_like)

    settings = _settings().model_copy(
        update={"dart": _settings().dart.model_copy(update={"strategy": "fixed", "n_fixed": 4})}
    )
    source = Source("toy/eval", lambda: read_file(problems), column_map())
    for path in (evaluated, fresh):
        with (
            Store.writer(path, command="curate") as store,
            StageContext(store, settings, scope=Scope(inputs=(source,)), teacher=backend) as ctx,
        ):
            for stage in ("ingest", "sample", "segment", "reweight"):
                run_stage(stage, ctx)

    def curated(path):
        with Store.reader(path) as store:
            counts = {
                t: n
                for t, n in store.table_counts().items()
                if not t.startswith("eval") and t not in ("runs", "schema_version")
            }
            traces = store.query("SELECT trace_id, completion FROM traces ORDER BY 1")
            evals = store.query("SELECT count(*) AS n FROM eval_samples")["n"][0]
        return counts, traces, evals

    (a_counts, a_traces, a_evals), (b_counts, b_traces, b_evals) = (
        curated(evaluated),
        curated(fresh),
    )
    assert (a_evals, b_evals) == (48, 0)
    assert a_counts == b_counts
    assert a_counts["traces"] == 48  # 12 problems x n_fixed 4: none counted from the eval
    assert a_traces.equals(b_traces)
