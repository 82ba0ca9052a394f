import csv
import json

import datasets
import polars as pl
import pytest

from pipeline.ingest import column_map, gsm8k_final, to_problems
from pipeline.readers import read_file
from pipeline.store import Store
from pipeline.text import last_boxed, normalize_answer, normalize_text
from tests.conftest import BENCHMARKS, GSM8K, MATH500, TESTDATA


def table(store_path, sql):
    with Store.reader(store_path) as store:
        return store.query(sql)


def test_math500_ingests_once(pitfall, store_path):
    pitfall("ingest", MATH500, "--preset", "math")
    assert pitfall.ingested() == [("math500/test.jsonl", 500, 0, 0)]
    pitfall("ingest", MATH500, "--preset", "math")
    assert pitfall.ingested() == [("math500/test.jsonl", 0, 500, 0)]
    count = pitfall("sql", "select count(*) from problems", "--format", "csv")
    assert count.output.splitlines() == ["count_star()", "500"]


def test_math500_keeps_answers_ids_and_meta(store_path, pitfall):
    pitfall("ingest", MATH500, "--preset", "math")
    source = [json.loads(line) for line in MATH500.read_text().splitlines()]
    got = table(store_path, "SELECT source_id, answer, meta FROM problems").rows()
    by_id = {sid: (ans, json.loads(meta)) for sid, ans, meta in got}
    for row in source:
        answer, meta = by_id[row["unique_id"]]
        assert answer == normalize_answer(row["answer"])
        assert meta == {"subject": row["subject"], "level": row["level"]}


def test_json_array_copy_gives_the_same_problems(store_path, pitfall):
    pitfall("ingest", MATH500, "--preset", "math")
    pitfall("ingest", BENCHMARKS / "math500" / "math500_test.json", "--preset", "math")
    assert pitfall.ingested()[0][1:3] == (0, 500)


def test_gsm8k_answers_come_from_the_hash_line(store_path, pitfall):
    pitfall("ingest", GSM8K, "--preset", "gsm8k")
    df = table(store_path, "SELECT problem, answer, solution FROM problems")
    assert df.height == 1319
    assert df["answer"].str.contains(r"^-?\d+(\.\d+)?$").all()
    source = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    want = {
        normalize_text(r["question"]): r["answer"].split("####")[-1].strip().replace(",", "")
        for r in source
    }
    assert dict(zip(df["problem"], df["answer"], strict=True)) == want
    # the worked solution is kept, without the answer line or <<calculator>> notes
    assert not df["solution"].str.contains("####|<<").any()


def test_mixed_file_takes_good_rows_and_quarantines_each_bad_one(store_path, pitfall):
    res = pitfall("ingest", TESTDATA / "mixed.jsonl")
    assert res.exit_code == 0
    assert pitfall.ingested() == [("data/mixed.jsonl", 4, 1, 9)]
    assert "9 bad row(s) went to quarantine" in res.output
    q = dict(table(store_path, "SELECT locator, reason FROM quarantine").iter_rows())
    assert q == {
        "line 2": "empty answer ('answer')",
        "line 3": "missing answer (answer)",
        "line 4": "problem column 'problem' holds int, not text",
        "line 5": "broken JSON: Expecting ',' delimiter at char 44",
        "line 7": "empty problem ('problem')",
        "line 9": "not a JSON object but list",
        "line 10": "problem is 30000 chars, over the limit of 20000",
        "line 12": "answer column 'answer' holds list, not text or a number",
        "line 13": "not UTF-8: invalid continuation byte at byte 16",
    }
    answers = sorted(table(store_path, "SELECT answer FROM problems")["answer"])
    assert answers == ["1", "3", "5", "6"]
    # running it again quarantines nothing twice
    pitfall("ingest", TESTDATA / "mixed.jsonl")
    assert table(store_path, "SELECT count(*) AS n FROM quarantine")["n"][0] == 9


def test_length_limit_comes_from_settings(tmp_path, pitfall, store_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[problems]\nmax_problem_chars = 15\n")
    res = pitfall("--config", cfg, "ingest", TESTDATA / "mixed.jsonl")
    assert "over the limit of 15" in res.output


def test_csv_with_a_bad_byte_and_a_short_row(tmp_path, pitfall, store_path):
    path = tmp_path / "probs.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "final"])
        w.writerow(["What is 3 + 4?", "7"])
        w.writerow(["A question\nthat spans two lines?", "yes"])
        w.writerow(["Too short"])
    with path.open("ab") as fh:
        fh.write(b"Caf\xe9?,2\n")
    pitfall("ingest", path, "--problem-col", "question", "--answer-col", "final")
    assert [x[1:] for x in pitfall.ingested()] == [(2, 0, 2)]
    reasons = sorted(table(store_path, "SELECT reason FROM quarantine")["reason"])
    assert reasons == ["fewer fields than the header's 2", "not UTF-8"]
    assert (
        "A question\nthat spans two lines?"
        in table(store_path, "SELECT problem FROM problems")["problem"].to_list()
    )


def test_parquet_and_numina_preset(tmp_path, pitfall, store_path):
    path = tmp_path / "numina.parquet"
    pl.DataFrame(
        {
            "problem": ["Find $x$ if $2x = 4$.", "Find $y$.", "No box here."],
            "solution": [
                "So $x = \\boxed{2}$.",
                "Thus $y = \\boxed{\\frac{1}{2}}$.",
                "The answer is 3.",
            ],
            "source": ["amc", "aime", "amc"],
        }
    ).write_parquet(path)
    pitfall("ingest", path, "--preset", "numina")
    assert [x[1:] for x in pitfall.ingested()] == [(2, 0, 1)]
    assert sorted(table(store_path, "SELECT answer FROM problems")["answer"]) == [
        "2",
        "\\frac{1}{2}",
    ]
    reason = table(store_path, "SELECT reason FROM quarantine")["reason"][0]
    assert reason == "missing answer (a boxed answer in 'solution')"


def test_hf_dataset_from_disk_and_from_a_data_folder(tmp_path, pitfall, store_path):
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:40]]
    ds = datasets.Dataset.from_list(rows)
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": ds}).save_to_disk(saved)
    pitfall("ingest", "--hf", saved, "--split", "test", "--preset", "gsm8k")
    assert [x[1:] for x in pitfall.ingested()] == [(40, 0, 0)]

    folder = tmp_path / "gsm_folder"
    folder.mkdir()
    ds.to_parquet(folder / "train.parquet")
    pitfall(
        "ingest", "--hf", folder, "--split", "train", "--preset", "gsm8k", "--source", "gsm-folder"
    )
    assert pitfall.ingested() == [("gsm-folder", 0, 40, 0)]


def test_hf_missing_split_is_a_clear_error(tmp_path, pitfall):
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "a": datasets.Dataset.from_list([{"problem": "p", "answer": "1"}]),
            "b": datasets.Dataset.from_list([{"problem": "q", "answer": "2"}]),
        }
    ).save_to_disk(saved)
    res = pitfall("ingest", "--hf", saved, ok=False)
    assert res.exit_code == 2
    assert "pick a split with --split (a, b)" in res.output


def test_missing_file_and_unknown_extension(tmp_path, pitfall):
    res = pitfall("ingest", tmp_path / "nope.jsonl", ok=False)
    assert res.exit_code == 2 and "no such file" in res.output
    odd = tmp_path / "problems.txt"
    odd.write_text("{}")
    res = pitfall("ingest", odd, ok=False)
    assert res.exit_code == 2 and "--format" in res.output
    res = pitfall("ingest", odd, "--format", "jsonl")
    assert [x[1:] for x in pitfall.ingested()] == [(0, 0, 1)]


def test_normalization_makes_equal_problems_one():
    records = list(read_file(TESTDATA / "mixed.jsonl"))[:1]
    variants = [
        {"problem": "What is 2 + 3?", "answer": "5"},
        {"problem": "  What   is 2 +\t3?\r\n", "answer": " 5 "},
        {"problem": "What is 2 + 3?", "answer": "5", "extra": 1},
    ]
    from pipeline.readers import Record

    recs = records + [Record(f"v{i}", v) for i, v in enumerate(variants)]
    good, bad = to_problems(recs, "s", column_map())
    assert bad.height == 0
    assert good["problem_id"].n_unique() == 1


def test_unicode_is_nfc():
    decomposed = "Cafe\u0301 has 3 croissants."
    assert normalize_text(decomposed) == "Caf\u00e9 has 3 croissants."
    assert normalize_text("a\n\n\n\nb  c ") == "a\n\nb c"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{a{b}c}", "a{b}c"),
        ("\\boxed{unbalanced", None),
        ("nothing", None),
    ],
)
def test_last_boxed(text, want):
    assert last_boxed(text) == want


def test_gsm8k_final():
    assert gsm8k_final("blah\n#### 1,234") == "1234"
    assert gsm8k_final("no marker") is None
