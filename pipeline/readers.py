"""Read records from files and HF datasets, one at a time, never failing on a bad row.

Each reader yields :class:`Record` items: a locator (``line 12``, ``row 3``),
the row as a dict, or the reason it could not be decoded plus the raw text.
Whole-file problems (missing file, unknown format, a JSON document that does
not parse) raise :class:`SourceError`: there is no row to quarantine then.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FORMATS = ("jsonl", "json", "parquet", "csv")


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    locator: str
    row: dict[str, Any] | None  # None when the row could not be decoded
    error: str | None = None
    raw: str | None = None


def detect_format(path: Path) -> str:
    suffixes = [s.lower().lstrip(".") for s in path.suffixes]
    for s in reversed(suffixes):
        if s in FORMATS:
            return s
        if s == "ndjson":
            return "jsonl"
    raise SourceError(
        f"{path}: cannot tell the format from the name; pass --format {'|'.join(FORMATS)}"
    )


def read_file(path: Path, fmt: str | None = None) -> Iterator[Record]:
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    fmt = fmt or detect_format(path)
    readers = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet, "csv": _read_csv}
    if fmt not in readers:
        raise SourceError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return readers[fmt](path)


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            loc = f"line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Record(loc, None, f"not UTF-8: {exc.reason} at byte {exc.start}", _show(raw))
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Record(loc, None, f"broken JSON: {exc.msg} at char {exc.pos}", text)
                continue
            if not isinstance(row, dict):
                yield Record(loc, None, f"not a JSON object but {type(row).__name__}", text)
                continue
            yield Record(loc, row)


def _read_json(path: Path) -> Iterator[Record]:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(
            f"{path}: not a JSON document ({exc}); JSON Lines files end in .jsonl"
        ) from exc
    if isinstance(doc, dict):
        # {"data": [...]} / {"rows": [...]} wrappers, or column-oriented {"col": [...], ...}
        lists = {k: v for k, v in doc.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            doc = next(iter(lists.values()))
        elif lists and len(lists) == len(doc) and len({len(v) for v in lists.values()}) == 1:
            doc = [
                dict(zip(lists, vals, strict=True)) for vals in zip(*lists.values(), strict=True)
            ]
        else:
            raise SourceError(f"{path}: expected a list of objects")
    if not isinstance(doc, list):
        raise SourceError(f"{path}: expected a list of objects, got {type(doc).__name__}")
    for i, row in enumerate(doc):
        loc = f"item {i}"
        if isinstance(row, dict):
            yield Record(loc, row)
        else:
            yield Record(loc, None, f"not a JSON object but {type(row).__name__}", _show(row))


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise SourceError(f"{path}: not a Parquet file ({exc})") from exc
    index = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            yield Record(f"row {index}", row)
            index += 1


def _read_csv(path: Path) -> Iterator[Record]:
    # surrogateescape keeps undecodable bytes visible, so one bad byte costs one row
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
    if not reader.fieldnames:
        raise SourceError(f"{path}: empty CSV")
    width = len(reader.fieldnames)
    for row in reader:
        loc = f"line {reader.line_num}"
        values = [v for v in row.values() if isinstance(v, str)]
        if any(_UNDECODED.search(v) for v in values):
            yield Record(loc, None, "not UTF-8", _show(row))
        elif _EXTRA in row:
            yield Record(loc, None, f"more fields than the header's {width}", _show(row))
        elif None in row.values():
            yield Record(loc, None, f"fewer fields than the header's {width}", _show(row))
        else:
            yield Record(loc, row)


_EXTRA = "\x00extra"
_UNDECODED = re.compile("[\udc80-\udcff]")


def read_hf(name_or_dir: str, split: str | None, config: str | None) -> Iterator[Record]:
    """A HF dataset: a folder written by ``save_to_disk``, a local data folder or a Hub name."""
    import datasets  # heavy import, only when asked for

    path = Path(name_or_dir)
    try:
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(name_or_dir, config, split=split)
    except Exception as exc:
        raise SourceError(f"cannot load dataset {name_or_dir!r}: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise SourceError(f"{name_or_dir}: pick a split with --split ({', '.join(ds)})")
            split = next(iter(ds))
        if split not in ds:
            raise SourceError(f"{name_or_dir}: no split {split!r} ({', '.join(ds)})")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield Record(f"row {i}", row)


def _show(value: Any, limit: int = 2000) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text.encode("utf-8", errors="replace").decode("utf-8")[:limit]
