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


def write_dataset(out_dir: Path, tables: dict[str, pl.DataFrame], card: dict) -> list[Exported]:
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
    (out_dir / "README.md").write_text(dataset_card(written, card), encoding="utf-8")
    return written


def dataset_card(written: list[Exported], card: dict) -> str:
    configs = "\n".join(
        f"- config_name: {e.config}\n  data_files:\n  - split: train\n    path: {e.config}/{SPLIT_FILE}"
        for e in written
    )
    rows = "\n".join(f"| `{e.config}` | {e.rows:,} | {CONFIGS[e.config]} |" for e in written)
    facts = "\n".join(f"- {k}: {redact(str(v))}" for k, v in card.items())  # a public card
    return f"""---
configs:
{configs}
tags:
- pitfall
- preference
- process-supervision
---

# pitfall export

Curated by pitfall from a teacher's verified traces, their first wrong steps
and the negatives built from them. Load one config with
`datasets.load_dataset("<repo or folder>", "<config>")`.

| config | rows | what |
|---|---|---|
{rows}

{facts}
"""
