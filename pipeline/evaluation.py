"""What `pitfall eval` computes besides sampling: which model it is, and its pass@k.

A model is identified by its files, not its path: a checkpoint retrained into
the same folder is another model, and the same weights copied elsewhere are
the same one. Its ``pitfall_train.json`` (written by ``pitfall train``) rides
along as lineage: base model, trainer kind, data fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.passk import PassAtK, mean_pass_at_k

LINEAGE_FILE = "pitfall_train.json"  # written by pitfall train beside the weights
# Files past this size are fingerprinted by size and their first and last block:
# hashing a 15 GB checkpoint in full would cost a minute per eval.
_WHOLE_FILE_BYTES = 256 << 20
_BLOCK = 16 << 20
_MODEL_FILES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".py")


@dataclass(frozen=True)
class ModelId:
    name: str  # as given (a path or a Hub id)
    fingerprint: str
    lineage: dict | None  # its pitfall_train.json


def identify(model: str) -> ModelId:
    """A local folder is fingerprinted by its files; anything else is a Hub id and
    is identified by its name."""
    path = Path(model)
    if not path.is_dir():
        return ModelId(model, "hub:" + model, None)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _MODEL_FILES):
        digest.update(f.name.encode())
        digest.update(_file_digest(f))
    lineage_file = path / LINEAGE_FILE
    lineage = (
        json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.is_file() else None
    )
    return ModelId(model, digest.hexdigest(), lineage)


def _file_digest(path: Path) -> bytes:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        if size <= _WHOLE_FILE_BYTES:
            for block in iter(lambda: f.read(_BLOCK), b""):
                h.update(block)
        else:
            h.update(f.read(_BLOCK))
            f.seek(size - _BLOCK)
            h.update(f.read(_BLOCK))
    return h.digest()


def pass_at_k_table(counts: pl.DataFrame, ks: list[int]) -> pl.DataFrame:
    """pass@k with its standard error per model, problem set and level.

    ``counts``: one row per (eval_id, model, problem_set, level, problem_id)
    with ``n`` samples and ``c`` correct. Each level gets a row, and ``all``
    one over every problem of the set. pass@k is null where a problem has fewer
    than k samples: a mean over the problems that happen to have more would be
    another problem set. ``sql/queries/eval_pass_at_k.sql`` gives the same
    figures for k = 1, 4, 8.
    """
    groups = ["eval_id", "model", "problem_set"]
    rows = []
    for key, frame in counts.group_by(groups, maintain_order=True):
        levels = sorted(frame["level"].drop_nulls().unique().to_list())
        for level in [*levels, "all"]:
            part = frame if level == "all" else frame.filter(pl.col("level") == level)
            pairs = list(part.select("n", "c").iter_rows())
            row = dict(zip(groups, key, strict=True))
            row.update(level=level, problems=len(pairs), samples=sum(n for n, _ in pairs))
            for k in ks:
                enough = pairs and all(n >= k for n, _ in pairs)
                score: PassAtK | None = mean_pass_at_k(pairs, k) if enough else None
                row[f"pass@{k}"] = score.value if score else None
                row[f"se@{k}"] = score.se if score else None
            rows.append(row)
    return pl.DataFrame(rows)
