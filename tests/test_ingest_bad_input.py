"""Input that once crashed `pitfall ingest` / `import-traces` (issue 11, item 6).

Each bad row goes to quarantine with its locator and reason; the rest of the
file is kept and the command exits 0.
"""

import csv
import decimal
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Settings
from pipeline.ingest import column_map
from pipeline.readers import Record, read_file
from pipeline.stages import Scope, Source, StageContext
from pipeline.stages import ingest as ingest_stage
from pipeline.store import Store

GOOD = [
    {"problem": "What is 1 + 1?", "answer": "2"},
    {"problem": "What is 2 + 2?", "answer": "4"},
]


def table(store_path, sql):
    with Store.reader(store_path) as store:
        return store.query(sql)


def quarantine(store_path) -> dict[str, tuple[str, str]]:
    rows = table(store_path, "SELECT locator, reason, raw FROM quarantine").iter_rows()
    return {loc: (reason, raw) for loc, reason, raw in rows}


def problems(store_path) -> list[str]:
    return sorted(table(store_path, "SELECT problem FROM problems")["problem"])


def write_lines(path, *lines: str):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_lone_surrogates_anywhere_in_a_row_are_quarantined(tmp_path, pitfall, store_path):
    # json.dumps escapes them, as a file from another JSON writer would hold them
    path = write_lines(
        tmp_path / "surrogates.jsonl",
        json.dumps(GOOD[0]),
        json.dumps({"problem": "What is \ud800?", "answer": "1"}),
        json.dumps({"problem": "What is 3 + 3?", "answer": "6\udfff"}),
        json.dumps({"problem": "What is 4 + 4?", "answer": "8", "meta": {"tags": ["a\udc00"]}}),
        json.dumps({"problem": "What is 5 + 5?", "answer": "10", "k\ud83d": 1}),
        json.dumps(GOOD[1]),
    )
    res = pitfall("ingest", path)
    assert "4 bad row(s) went to quarantine" in res.output
    assert problems(store_path) == ["What is 1 + 1?", "What is 2 + 2?"]
    q = quarantine(store_path)
    assert {loc: reason for loc, (reason, _) in q.items()} == {
        "line 2": "lone surrogate (not valid Unicode) in column 'problem'",
        "line 3": "lone surrogate (not valid Unicode) in column 'answer'",
        "line 4": "lone surrogate (not valid Unicode) in column 'meta'",
        "line 5": "lone surrogate (not valid Unicode) in column 'k\\ud83d'",
    }
    # the stored raw text is valid UTF-8 and still shows where the surrogate was
    assert "What is \\ud800?" in q["line 2"][1]
    assert "k\\ud83d" in q["line 5"][1]


def test_lone_surrogate_in_a_generation_is_quarantined(tmp_path, pitfall, store_path):
    path = write_lines(
        tmp_path / "gens.jsonl",
        json.dumps({**GOOD[0], "generations": ["1 + 1 = \\boxed{2}"]}),
        json.dumps({**GOOD[1], "generations": ["2 + 2 = \ud800"]}),
    )
    res = pitfall("import-traces", path)
    assert "1 bad row(s) went to quarantine" in res.output
    assert table(store_path, "SELECT count(*) AS n FROM traces")["n"][0] == 1
    assert quarantine(store_path)["line 2"][0] == (
        "lone surrogate (not valid Unicode) in column 'generations'"
    )


def test_csv_header_with_a_bad_byte_keeps_the_rows(tmp_path, pitfall, store_path):
    # One byte of the header names nothing a row depends on: the column keeps
    # its name with U+FFFD for the byte, and every row is taken.
    path = tmp_path / "latin1_header.csv"
    path.write_bytes(b"problem,answer,caf\xe9\nWhat is 1 + 1?,2,x\nWhat is 2 + 2?,4,y\n")
    pitfall("ingest", path)
    assert [x[1:] for x in pitfall.ingested()] == [(2, 0, 0)]
    metas = table(store_path, "SELECT meta FROM problems ORDER BY answer")["meta"]
    assert [json.loads(m) for m in metas] == [{"caf\ufffd": "x"}, {"caf\ufffd": "y"}]


def test_csv_field_over_the_csv_module_limit_is_one_bad_row(tmp_path, pitfall, store_path):
    path = tmp_path / "huge_field.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["problem", "answer"])
        w.writerow(["x" * 200_000, "1"])
        w.writerow([GOOD[0]["problem"], GOOD[0]["answer"]])
    res = pitfall("ingest", path)
    assert res.exit_code == 0
    assert problems(store_path) == ["What is 1 + 1?"]
    reason, _ = quarantine(store_path)["line 2"]
    assert reason == "bad CSV: field larger than field limit (131072)"


def test_integer_past_the_digit_limit_is_a_bad_row(tmp_path, pitfall, store_path):
    big = "9" * 5000
    path = write_lines(
        tmp_path / "big.jsonl",
        json.dumps(GOOD[0]),
        '{"problem": "How big?", "answer": ' + big + "}",
        json.dumps(GOOD[1]),
    )
    res = pitfall("ingest", path)
    assert "1 x integer with more than 4300 digits" in res.output
    assert problems(store_path) == ["What is 1 + 1?", "What is 2 + 2?"]
    _, raw = quarantine(store_path)["line 2"]
    assert raw.startswith('{"problem": "How big?", "answer": 999')


def test_integer_past_the_digit_limit_in_a_json_document(tmp_path, pitfall, store_path):
    path = tmp_path / "big.json"
    path.write_text(
        '{"data": ['
        + json.dumps(GOOD[0])
        + ', {"problem": "p", "answer": '
        + "1" * 5000
        + "}, "
        + json.dumps(GOOD[1])
        + "]}"
    )
    pitfall("ingest", path)
    assert problems(store_path) == ["What is 1 + 1?", "What is 2 + 2?"]
    assert quarantine(store_path)["item 1"][0] == "integer with more than 4300 digits"


def test_deep_nesting_in_a_jsonl_line(tmp_path, pitfall, store_path):
    deep = "[" * 100_000 + "]" * 100_000
    path = write_lines(
        tmp_path / "deep.jsonl",
        json.dumps(GOOD[0]),
        '{"problem": "Deep?", "answer": "1", "meta": ' + deep + "}",
        json.dumps(GOOD[1]),
    )
    res = pitfall("ingest", path)
    assert "1 x JSON nested too deeply" in res.output
    assert problems(store_path) == ["What is 1 + 1?", "What is 2 + 2?"]
    assert set(quarantine(store_path)) == {"line 2"}


def test_deep_nesting_in_a_json_document_costs_one_item(tmp_path, pitfall, store_path):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.json"
    path.write_text(
        "[" + json.dumps(GOOD[0]) + ', {"problem": "Deep?", "answer": "1", "m": ' + deep + "}, "
        '{"problem": "A \\"quoted]\\" [bracket", "answer": "5"}, ' + json.dumps(GOOD[1]) + "]"
    )
    res = pitfall("ingest", path)
    assert res.exit_code == 0
    assert problems(store_path) == [
        'A "quoted]" [bracket',
        "What is 1 + 1?",
        "What is 2 + 2?",
    ]
    assert {loc: r for loc, (r, _) in quarantine(store_path).items()} == {
        "item 1": "JSON nested too deeply"
    }


def test_deep_nesting_in_a_column_oriented_json_document_is_a_clear_error(tmp_path, pitfall):
    path = tmp_path / "columns.json"
    path.write_text('{"problem": ["p"], "answer": [' + "[" * 5000 + "]" * 5000 + "]}")
    res = pitfall("ingest", path, ok=False)
    assert res.exit_code == 2
    assert "nested too deeply" in res.output


def _damage_row_group(path, group: int) -> None:
    """Flip bytes in the middle of the first column chunk of one row group."""
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    middle = start + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    for i in range(middle, middle + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_parquet_row_group_is_quarantined_by_name(tmp_path, pitfall, store_path):
    path = tmp_path / "damaged.parquet"
    n = 300
    pq.write_table(
        pa.table(
            {
                "problem": [f"What is {i} + {i}? Show your work." for i in range(n)],
                "answer": [str(2 * i) for i in range(n)],
            }
        ),
        path,
        row_group_size=100,
        compression="none",
        write_page_checksum=True,
    )
    _damage_row_group(path, 1)
    pitfall("ingest", path)
    assert [x[1:] for x in pitfall.ingested()] == [(200, 0, 1)]
    got = table(store_path, "SELECT answer FROM problems")["answer"].cast(int).sort().to_list()
    assert got == [2 * i for i in (*range(100), *range(200, 300))]
    [(locator, (reason, _))] = quarantine(store_path).items()
    assert locator == "row group 1"
    assert reason.startswith("damaged row group (rows 100..199 lost): ")


def test_label_out_of_range_is_a_bad_row(tmp_path, pitfall, store_path):
    path = write_lines(
        tmp_path / "labels.jsonl",
        json.dumps({**GOOD[0], "generations": ["2"], "label": 10**12}),
        json.dumps({**GOOD[1], "generations": ["4"], "label": 2**31}),
        json.dumps({"problem": "What is 3 + 3?", "answer": "6", "generations": ["6"], "label": 0}),
    )
    res = pitfall("import-traces", path, "--label-col", "label")
    assert res.exit_code == 0
    labels = table(store_path, "SELECT first_error FROM first_errors")["first_error"].to_list()
    assert labels == [0]
    q = {loc: r for loc, (r, _) in quarantine(store_path).items()}
    assert q == {
        "line 1": "label 1000000000000 is not -1 or a step index (0..2147483647)",
        "line 2": "label 2147483648 is not -1 or a step index (0..2147483647)",
    }


def test_control_characters_are_stripped_from_problems_and_answers(tmp_path, pitfall, store_path):
    path = write_lines(
        tmp_path / "controls.jsonl",
        json.dumps({"problem": "What\x00 is\x07 1 +\x1b 1?\x85\x9f", "answer": "\x002\x7f"}),
        json.dumps({"problem": "Line one\x01\nline\ttwo", "answer": "3"}),
        json.dumps({"problem": "\x00\x01", "answer": "4"}),
    )
    res = pitfall("ingest", path)
    rows = table(store_path, "SELECT problem, answer FROM problems ORDER BY answer").rows()
    assert rows == [("What is 1 + 1?", "2"), ("Line one\nline two", "3")]
    assert quarantine(store_path)["line 3"][0] == "empty problem ('problem')"
    # the same problem written cleanly is the same problem
    clean = write_lines(tmp_path / "clean.jsonl", json.dumps(GOOD[0]))
    pitfall("ingest", clean)
    assert [x[1:] for x in pitfall.ingested()] == [(0, 1, 0)]
    assert res.exit_code == 0


def test_decimal_answer_is_a_number(tmp_path, pitfall, store_path):
    path = tmp_path / "decimals.parquet"
    pq.write_table(
        pa.table(
            {
                "problem": ["What is 7 / 2?", "What is 10 * 10?", "What is 0 * 3?"],
                "answer": pa.array(
                    [decimal.Decimal("3.50"), decimal.Decimal("100.00"), decimal.Decimal("-0.00")],
                    pa.decimal128(10, 2),
                ),
            }
        ),
        path,
    )
    pitfall("ingest", path)
    assert [x[1:] for x in pitfall.ingested()] == [(3, 0, 0)]
    rows = table(store_path, "SELECT answer FROM problems ORDER BY problem").rows()
    assert rows == [("0",), ("100",), ("3.5",)]
    # the same problems with int and float answers are the same problems
    same = write_lines(
        tmp_path / "numbers.jsonl",
        json.dumps({"problem": "What is 7 / 2?", "answer": 3.5}),
        json.dumps({"problem": "What is 10 * 10?", "answer": 100}),
    )
    pitfall("ingest", same)
    assert [x[1:] for x in pitfall.ingested()] == [(0, 2, 0)]


def test_ingest_commits_chunk_by_chunk_and_counts_as_before(store_path, monkeypatch):
    """Rows reach the store before the input is read to the end, and a problem
    repeated across chunks is still counted once as taken, then as skipped."""
    in_store: list[int] = []

    def records():
        for i in range(30):
            if i in (10, 20):
                with Store.reader(store_path) as s:
                    in_store.append(s.query("SELECT count(*) AS n FROM problems")["n"][0])
            yield Record(f"line {i + 1}", {"problem": f"What is {i % 15} + 1?", "answer": "x"})
        yield Record("line 31", None, "broken JSON", "{")

    monkeypatch.setattr(ingest_stage, "PROBLEM_ROUND", 10)
    source = Source("gen", records, column_map())
    with Store.writer(store_path, command="test") as store:
        got = ingest_stage.run(StageContext(store, Settings(), scope=Scope(inputs=(source,))))
    assert in_store == [10, 15]
    (counts,) = got.detail["sources"]
    assert (counts["taken"], counts["skipped"], counts["quarantined"]) == (15, 15, 1)
    assert counts["reasons"] == {"broken JSON": 1}


def test_import_numbers_a_repeated_problem_on_across_chunks(store_path, monkeypatch):
    rows = [{**GOOD[0], "generations": [f"try {i}"]} for i in range(3)]
    records = [Record(f"line {i + 1}", row) for i, row in enumerate(rows)]
    monkeypatch.setattr(ingest_stage, "TRACE_ROUND", 1)
    source = Source("gen", lambda: records, column_map())
    with Store.writer(store_path, command="test") as store:
        ctx = StageContext(store, Settings(), scope=Scope(inputs=(source,)))
        got = ingest_stage.import_traces(ctx, ingest_stage.TraceColumns(model="m"))
    (counts,) = got.detail["sources"]
    assert (counts["problems new"], counts["traces new"], counts["traces skipped"]) == (1, 3, 0)
    traces = table(store_path, "SELECT sample_index, completion FROM traces ORDER BY 1").rows()
    assert traces == [(0, "try 0"), (1, "try 1"), (2, "try 2")]


def test_csv_reader_streams(tmp_path):
    path = tmp_path / "many.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["problem", "answer"])
        w.writerows([f"What is {i} plus {i}? Think it over.", 2 * i] for i in range(100_000))
    tracemalloc.start()
    try:
        records = read_file(path)
        first = next(records)
        _, peak = tracemalloc.get_traced_memory()
        records.close()
    finally:
        tracemalloc.stop()
    assert first.row == {"problem": "What is 0 plus 0? Think it over.", "answer": "0"}
    assert peak < path.stat().st_size / 10
