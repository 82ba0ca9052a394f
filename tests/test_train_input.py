"""`pitfall train` on data or models it cannot use: one `error:` line that names
the problem (exit 2), before any model loads; identical pairs are dropped and counted."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from trainers.data import DataError, load_train_data

PAIR = {"prompt": "<s><|user|>Start with 2. Add 3.\n<|assistant|>", "chosen": "5", "rejected": "6"}
SPLIT = "train-00000-of-00001.parquet"


def export(folder: Path, config: str, rows: list[dict], schema=None) -> Path:
    (folder / config).mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=schema).write_parquet(folder / config / SPLIT)
    return folder


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_folder_without_the_kinds_config(pitfall, tmp_path):
    data = export(tmp_path / "x", "sft", [{"prompt": "p", "completion": "c", "weight": 1.0}])
    line = error_line(pitfall("train", "dpo", "--data", data, ok=False))
    assert line == f"error: {data}: no 'outcome' config for dpo (has: sft)"


def test_a_config_without_the_columns(pitfall, tmp_path):
    data = export(tmp_path / "x", "step", [{"prompt": "p", "chosen": "c"}])
    line = error_line(pitfall("train", "step-dpo", "--data", data, ok=False))
    assert line == f"error: {data}: config 'step' lacks column(s) rejected (has: prompt, chosen)"


def test_an_empty_config(pitfall, tmp_path):
    schema = {"prompt": pl.String, "chosen": pl.String, "rejected": pl.String}
    data = export(tmp_path / "x", "outcome", [], schema=schema)
    line = error_line(pitfall("train", "redi", "--data", data, ok=False))
    assert line == f"error: {data}: config 'outcome' has no rows to train on"


def test_pairs_whose_chosen_equals_rejected_are_dropped_and_counted(pitfall, tmp_path):
    same = PAIR | {"rejected": PAIR["chosen"]}
    data = export(tmp_path / "x", "outcome", [same, same])
    line = error_line(pitfall("train", "dpo", "--data", data, ok=False))
    assert line.endswith("config 'outcome' has no rows to train on (2 chosen equals rejected)")
    data = export(tmp_path / "y", "first_pit", [PAIR, same, PAIR])
    rows = load_train_data(str(data), "first-pit")
    assert rows.dataset.num_rows == 2 and rows.dropped == {"chosen equals rejected": 1}
    assert set(rows.dataset["rejected"]) == {"6"}


def test_a_model_path_that_does_not_exist(pitfall, tmp_path):
    data = export(tmp_path / "x", "outcome", [PAIR])
    missing = tmp_path / "no" / "model"
    line = error_line(pitfall("train", "redi", "--data", data, "--model", missing, ok=False))
    assert line == f"error: {missing}: no such model folder"


def test_unknown_kinds_recipes_and_values(pitfall, tmp_path):
    data = export(tmp_path / "x", "outcome", [PAIR])
    assert "unknown kind 'ppo'" in error_line(pitfall("train", "ppo", "--data", data, ok=False))
    assert "name a recipe" in error_line(pitfall("train", "recipe", ok=False))
    line = error_line(pitfall("train", "redi", "--truncation", "middle", ok=False))
    assert line.startswith("error: [train] truncation: ")


def test_the_data_is_checked_before_the_fingerprint_is_taken(tmp_path):
    with pytest.raises(DataError, match="not an export folder"):
        load_train_data(str(tmp_path / "a" / "b" / "c"), "sft")
    data = export(tmp_path / "x", "outcome", [PAIR])
    first = load_train_data(str(data), "redi").fingerprint
    assert load_train_data(str(data), "dpo").fingerprint == first
    export(tmp_path / "x", "outcome", [PAIR, PAIR | {"chosen": "5."}])
    assert load_train_data(str(data), "redi").fingerprint != first  # a new export, a new print


def test_a_hub_dataset_repo(monkeypatch, tmp_path):
    """The Hub cannot be reached from here: `snapshot_download` is replaced by a
    stand-in that puts the repo's files where the real one would (a folder named
    after the commit, in the export's layout)."""
    import huggingface_hub

    pushed = export(tmp_path / "pushed", "outcome", [PAIR, PAIR | {"rejected": PAIR["chosen"]}])
    asked = []

    def snapshot_download(repo, repo_type, allow_patterns):
        asked.append((repo, repo_type, allow_patterns))
        snapshot = tmp_path / "cache" / "snapshots" / "0123abcd"
        if not snapshot.exists():
            snapshot.parent.mkdir(parents=True)
            pushed.rename(snapshot)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    rows = load_train_data("org/toy-pitfall", "redi")
    assert asked == [("org/toy-pitfall", "dataset", ["outcome/*"])]
    assert rows.dataset.num_rows == 1 and rows.dropped == {"chosen equals rejected": 1}
    assert (rows.source, rows.revision) == ("org/toy-pitfall", "0123abcd")
    local = export(tmp_path / "local", "outcome", [PAIR, PAIR | {"rejected": PAIR["chosen"]}])
    assert rows.fingerprint == load_train_data(str(local), "redi").fingerprint  # same files
    with pytest.raises(DataError, match="no 'step' config"):
        load_train_data("org/toy-pitfall", "step-dpo")


class _AddsBos:
    """A tokenizer that puts BOS (id 1, text <s>) before what it encodes."""

    bos_token, bos_token_id = "<s>", 1

    def __call__(self, text):
        return {"input_ids": [1, *range(2, 2 + len(text))]}


def test_a_prompt_that_starts_with_bos_text_loses_it_when_the_tokenizer_adds_bos(tmp_path):
    from trainers.data import without_doubled_bos

    rows = [PAIR, PAIR | {"prompt": "Start with 2.\n"}]
    data = load_train_data(str(export(tmp_path / "x", "outcome", rows)), "dpo")
    without_doubled_bos(data, _AddsBos())
    assert data.dataset["prompt"] == [
        "<|user|>Start with 2. Add 3.\n<|assistant|>",
        "Start with 2.\n",
    ]
    assert data.dataset["chosen"] == ["5", "5"]
    kept = load_train_data(str(tmp_path / "x"), "dpo")
    plain = _AddsBos()
    plain.bos_token_id = 99  # adds something else first: the text stays
    without_doubled_bos(kept, plain)
    assert kept.dataset["prompt"][0] == PAIR["prompt"]
