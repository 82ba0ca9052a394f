"""TRL-ready datasets from the store's selections and pairs, in Hugging Face Hub layout.

One folder per dataset config, each a Parquet split that `datasets.load_dataset`
and TRL read as they are:

- ``sft``: prompt / completion (+ weight) from an ``sft_selection`` recipe
- ``outcome``: prompt / chosen / rejected (REDI, DPO)
- ``step``: prompt / chosen / rejected (Step-DPO)
- ``first_pit``: prompt / chosen / rejected (Setlur et al.)
- ``stepwise``: prompt / completions / labels (TRL stepwise supervision)

plus a README.md dataset card whose YAML header lists the configs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.config import redact

CONFIGS = {
    "sft": "prompt / completion with a DART weight (SFT, REDI stage 1)",
    "outcome": "first correct vs first incorrect trace per problem (REDI, DPO)",
    "step": "prefix before the first wrong step; a correct next step vs the wrong one (Step-DPO)",
    "first_pit": "a correct solution vs the wrong trace cut after its first pit (Setlur et al.)",
    "stepwise": "steps with per-step labels (True before the first error), best-of-K values "
    "(Setlur et al.), mean success rates and advantages from the best-of-K values "
    "(TRL stepwise supervision)",
}
SPLIT_FILE = "train-00000-of-00001.parquet"


@dataclass(frozen=True)
class Exported:
    config: str
    path: Path
    rows: int


def preference_rows(pairs: pl.DataFrame) -> pl.DataFrame:
    return pairs.select(
        "prompt", "chosen", "rejected", "problem_id", "chosen_trace_id", "rejected_trace_id"
    )


def stepwise_rows(pairs: pl.DataFrame) -> pl.DataFrame:
    metas = [json.loads(m) for m in pairs["meta"]]
    return pl.DataFrame(
        {
            "prompt": pairs["prompt"],
            "completions": [m["completions"] for m in metas],
            "labels": [m["labels"] for m in metas],
            "values": [m["values"] for m in metas],
            "mean_values": [m["mean_values"] for m in metas],
            "advantages": [m["advantages"] for m in metas],
            "problem_id": pairs["problem_id"],
            "trace_id": pairs["rejected_trace_id"],
        },
        schema_overrides={
            "values": pl.List(pl.Float64),
            "mean_values": pl.List(pl.Float64),
            "advantages": pl.List(pl.Float64),
            "labels": pl.List(pl.Boolean),
        },
    )


# what trains on each config, for the card's "how to train" section
TRAIN_COMMANDS = {
    "sft": ["pitfall train sft --data {dir}", "pitfall train recipe redi --data {dir}"],
    "outcome": [
        "pitfall train dpo --data {dir} --model SFT_CHECKPOINT",
        "pitfall train redi --data {dir} --model SFT_CHECKPOINT",
    ],
    "step": ["pitfall train step-dpo --data {dir} --model SFT_CHECKPOINT"],
    "first_pit": ["pitfall train first-pit --data {dir} --model SFT_CHECKPOINT"],
    "stepwise": [],  # TRL 1.16 has no PRM trainer: the rows are its stepwise-supervision format
}


@dataclass
class Provenance:
    """Where an export's rows came from, for its dataset card."""

    teachers: list[dict]  # model, params (JSON), origin, traces, tokens
    verifier: str
    localization: dict  # method, traces, first_errors, rollouts, rollout_tokens
    dart: dict  # strategy and its parameters
    sft_recipe: str
    runs: list[dict]  # run_id, command, status, version, started_at
    version: str


def write_dataset(
    out_dir: Path, tables: dict[str, pl.DataFrame], provenance: Provenance
) -> list[Exported]:
    """Write each non-empty table as ``out_dir/<config>/train-...parquet`` and the card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for config, frame in tables.items():
        path = out_dir / config / SPLIT_FILE
        if frame.height == 0:
            path.unlink(missing_ok=True)  # an earlier export's rows are not this store's
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        frame.write_parquet(tmp, compression="zstd")
        tmp.replace(path)  # a reader never sees half a file
        written.append(Exported(config, path, frame.height))
    (out_dir / "README.md").write_text(dataset_card(written, provenance), encoding="utf-8")
    return written


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_card(written: list[Exported], p: Provenance) -> str:
    """The export's README.md: Hub configs, what each holds, where it came from, how
    to load and train on it. Credentials in any URL are hidden: the card is public."""
    configs = "\n".join(
        f"- config_name: {e.config}\n  data_files:\n  - split: train\n    path: {e.config}/{SPLIT_FILE}"
        for e in written
    )
    rows = "\n".join(
        f"| `{e.config}` | {e.rows:,} | {CONFIGS[e.config]} | `{file_sha256(e.path)}` |"
        for e in written
    )
    teachers = "\n".join(
        f"| `{t['model']}` | `{t['params'] or 'not recorded'}` | {t['origin']} | {t['traces']:,} | {t['tokens'] or 0:,} |"
        for t in p.teachers
    )
    loc = p.localization
    dart = ", ".join(f"{k} = {v}" for k, v in p.dart.items())
    runs = "\n".join(
        f"| `{r['run_id']}` | {r['command']} | {r['status']} | {r['version']} | {r['started_at']} |"
        for r in p.runs
    )
    train = "\n".join(
        f"- `{e.config}`: "
        + (
            "; ".join(f"`{c.format(dir='DIR')}`" for c in TRAIN_COMMANDS[e.config])
            or "no pitfall trainer (TRL's stepwise-supervision format, for a PRM)"
        )
        for e in written
    )
    first = written[0].config if written else "sft"
    text = f"""---
configs:
{configs}
tags:
- pitfall
- preference
- process-supervision
---

# pitfall export

Curated by pitfall {p.version} from a teacher's verified traces, their first
wrong steps and the negatives built from them.

| config | rows | what | sha256 of the Parquet file |
|---|---|---|---|
{rows}

## Provenance

| teacher | sampling parameters | origin | traces | completion tokens |
|---|---|---|---|---|
{teachers}

- verifier: {p.verifier}
- first errors (step, first_pit, stepwise): {loc["method"]}, {loc["first_errors"]:,} found
  over {loc["traces"]:,} labelled traces (correct ones included), {loc["rollouts"]:,} rollouts,
  {loc["rollout_tokens"]:,} rollout tokens
- DART sampling: {dart}
- SFT selection: {p.sft_recipe}
- pitfall version: {p.version}

The runs that wrote these rows (the store's `runs` table has their resolved settings):

| run | command | status | pitfall | started |
|---|---|---|---|---|
{runs}

## How to load and train

```python
from datasets import load_dataset
rows = load_dataset("DIR_OR_REPO", "{first}", split="train")
```

With pitfall (DIR: this folder or the Hub repo):

{train}
"""
    return redact(text)
