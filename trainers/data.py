"""The training data: one config of a pitfall export, from a folder or a Hub dataset repo.

What each trainer needs is checked before any model loads, and a problem is one
`DataError` that names it: a missing config or column, no rows, a pair whose
chosen equals its rejected (dropped and counted: it carries no preference).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_dataset

# the export config each trainer reads, and the columns it needs there
NEEDS = {
    "sft": ("sft", ("prompt", "completion")),
    "dpo": ("outcome", ("prompt", "chosen", "rejected")),
    "step-dpo": ("step", ("prompt", "chosen", "rejected")),
    "first-pit": ("first_pit", ("prompt", "chosen", "rejected")),
    "redi": ("outcome", ("prompt", "chosen", "rejected")),
}


class DataError(ValueError):
    """Training data that cannot be used; the message says what is wrong."""


@dataclass
class TrainData:
    dataset: Dataset
    source: str  # the folder or repo id, as given
    config: str
    fingerprint: str  # sha256 of the config's files (a folder), datasets' own fingerprint (a repo)
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason


def load_train_data(source: str, kind: str) -> TrainData:
    """The rows of the export config that ``kind`` trains on, checked."""
    config, columns = NEEDS[kind]
    folder = Path(source)
    if folder.is_dir():
        files = sorted((folder / config).glob("*.parquet"))
        if not files:
            have = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
            raise DataError(
                f"{source}: no {config!r} config for {kind} (has: {', '.join(have) or 'none'})"
            )
        dataset = load_dataset("parquet", data_files=[str(f) for f in files], split="train")
        fingerprint = _sha256(files)
    elif folder.exists() or source.startswith((".", "/")) or source.count("/") != 1:
        raise DataError(f"{source}: not an export folder or a Hub dataset repo (org/name)")
    else:  # a Hub dataset repo that `pitfall export --push` wrote
        try:
            dataset = load_dataset(source, config, split="train")
        except Exception as exc:  # the Hub's errors are many; the message is what matters
            raise DataError(f"{source}: cannot load config {config!r}: {exc}") from None
        fingerprint = dataset._fingerprint
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{source}: config {config!r} lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(dataset.column_names)})"
        )
    dropped = {}
    if "rejected" in columns:
        kept = dataset.filter(lambda r: r["chosen"] != r["rejected"])
        if kept.num_rows < dataset.num_rows:
            dropped["chosen equals rejected"] = dataset.num_rows - kept.num_rows
        dataset = kept
    if dataset.num_rows == 0:
        why = f" ({', '.join(f'{n} {r}' for r, n in dropped.items())})" if dropped else ""
        raise DataError(f"{source}: config {config!r} has no rows to train on{why}")
    return TrainData(dataset, source, config, fingerprint, dropped)


def _sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
