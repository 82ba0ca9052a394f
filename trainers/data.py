"""The training data: one config of a pitfall export, from a folder or a Hub dataset repo.

What each trainer needs is checked before any model loads, and a problem is one
`DataError` that names it: a missing config or column, no rows, a pair whose
chosen equals its rejected (dropped and counted: it carries no preference).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from datasets import Dataset

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
    fingerprint: str  # sha256 of the config's files
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    revision: str | None = None  # a Hub repo's commit


def load_train_data(source: str, kind: str) -> TrainData:
    """The rows of the export config that ``kind`` trains on, checked."""
    from datasets import Dataset  # heavy: only when training

    config, columns = NEEDS[kind]
    folder, revision = Path(source), None
    if not folder.is_dir():
        if folder.exists() or source.startswith((".", "/")) or source.count("/") != 1:
            raise DataError(f"{source}: not an export folder or a Hub dataset repo (org/name)")
        folder, revision = _from_hub(source, config)
    files = sorted((folder / config).glob("*.parquet"))
    if not files:
        have = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
        raise DataError(
            f"{source}: no {config!r} config for {kind} (has: {', '.join(have) or 'none'})"
        )
    # in memory, as the files are: nothing is written to the datasets cache
    table = pa.concat_tables([pq.read_table(f) for f in files])
    fingerprint = _sha256(files)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(
            f"{source}: config {config!r} lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(table.column_names)})"
        )
    dropped = {}
    if "rejected" in columns:
        same = pc.fill_null(pc.equal(table["chosen"], table["rejected"]), False)
        if n := pc.sum(same).as_py() or 0:
            dropped["chosen equals rejected"] = n
            table = table.filter(pc.invert(same))
    if table.num_rows == 0:
        why = f" ({', '.join(f'{n} {r}' for r, n in dropped.items())})" if dropped else ""
        raise DataError(f"{source}: config {config!r} has no rows to train on{why}")
    dataset = Dataset(table)
    return TrainData(dataset, source, config, fingerprint, dropped, revision)


def without_doubled_bos(data: TrainData, tokenizer) -> None:
    """Exported prompts are rendered chat templates that may begin with the BOS
    text; a tokenizer that adds BOS itself (as TRL's trainers let it) would then
    start every sequence with two. The text's copy is dropped."""
    from datasets import Dataset

    bos, probe = tokenizer.bos_token, tokenizer("x")["input_ids"]
    if not bos or not probe or probe[0] != tokenizer.bos_token_id:
        return
    table = data.dataset.data.table
    prompts = table["prompt"]
    starts = pc.fill_null(pc.starts_with(prompts, bos), False)
    if pc.any(starts).as_py():
        stripped = pc.if_else(starts, pc.utf8_slice_codeunits(prompts, len(bos)), prompts)
        data.dataset = Dataset(
            table.set_column(table.schema.get_field_index("prompt"), "prompt", stripped)
        )


def _from_hub(repo: str, config: str) -> tuple[Path, str]:
    """The config's files of a Hub dataset repo that `pitfall export` pushed (the
    same layout as the folder), downloaded to the cache, and the commit they are from."""
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo, repo_type="dataset", allow_patterns=[f"{config}/*"])
    except Exception as exc:  # the Hub's errors are many; their first line says which
        raise DataError(
            f"{repo}: cannot download config {config!r}: {str(exc).splitlines()[0]}"
        ) from None
    return Path(local), Path(local).name  # .../snapshots/<commit>


def _sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
