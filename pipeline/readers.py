"""Read records from files and HF datasets, one at a time, never failing on a bad row.

Each reader yields :class:`Record` items: a locator (``line 12``, ``row 3``),
the row as a dict, or the reason it could not be decoded plus the raw text.
Whole-file problems (missing file, unknown format, a JSON document that does
not parse) raise :class:`SourceError` before the first record: there is no row
to quarantine then. Files are read as the records are consumed, except a
``.json`` document, which is parsed whole.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("jsonl", "json", "parquet", "csv")
T = TypeVar("T")


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    locator: str
    row: dict[str, Any] | None  # None when the row could not be decoded
    error: str | None = None
    raw: str | None = None


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last one shorter), taken from ``items`` only as needed."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


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
            if text.strip():
                yield _json_record(loc, text)


def _json_record(loc: str, text: str) -> Record:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return Record(loc, None, f"broken JSON: {exc.msg} at char {exc.pos}", text)
    except RecursionError:
        return Record(loc, None, "JSON nested too deeply", text)
    except ValueError:  # json.loads's only other error: an integer too long for int()
        digits = sys.get_int_max_str_digits()
        return Record(loc, None, f"integer with more than {digits} digits", text)
    if not isinstance(row, dict):
        return Record(loc, None, f"not a JSON object but {type(row).__name__}", text)
    return Record(loc, row)


def _read_json(path: Path) -> Iterator[Record]:
    try:
        text = path.read_bytes().decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(
            f"{path}: not a JSON document ({exc}); JSON Lines files end in .jsonl"
        ) from exc
    except (RecursionError, ValueError) as exc:
        # The stdlib parser gives up on the whole document for one value nested
        # too deep or one integer too long: parse the rows one by one instead.
        why = "nested too deeply" if isinstance(exc, RecursionError) else "an integer too long"
        items = _row_texts(text, path, why)
        return (_json_record(f"item {i}", item) for i, item in enumerate(items))
    return _json_rows(path, doc)


def _json_rows(path: Path, doc: Any) -> Iterator[Record]:
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


# a JSON string, or a bracket or comma outside one
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{},]')


def _row_texts(text: str, path: Path, why: str) -> list[str]:
    """The text of each row of a JSON document: the items of its top-level list,
    or of the one list in a wrapper object. Brackets are matched outside strings
    by counting, so no depth of nesting can overflow the stack."""
    row_depth = 1 if text.lstrip()[:1] == "[" else 2
    lists: list[list[str]] = []
    items: list[str] | None = None  # of the list being split
    depth = start = 0
    for m in _JSON_TOKEN.finditer(text):
        token = m[0]
        if token in ("[", "{"):
            depth += 1
            if token == "[" and depth == row_depth:
                items, start = [], m.end()
        elif items is not None and depth == row_depth and token in (",", "]"):
            items.append(text[start : m.start()])
            start = m.end()
            if token == "]":
                lists.append(items)
                items = None
        if token in ("]", "}"):
            depth -= 1
    if depth != 0 or len(lists) != 1:
        raise SourceError(f"{path}: a value is {why}, and the document is not a list of rows")
    rows = lists[0]
    return [] if len(rows) == 1 and not rows[0].strip() else rows


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        # checksums catch damaged pages where the writer stored them
        pf = pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as exc:
        raise SourceError(f"{path}: not a Parquet file ({exc})") from exc
    index = 0
    # a row group at a time, so a damaged one costs its own rows only
    for group in range(pf.num_row_groups):
        end = index + pf.metadata.row_group(group).num_rows
        try:
            for batch in pf.iter_batches(batch_size=10_000, row_groups=[group]):
                for row in batch.to_pylist():
                    yield Record(f"row {index}", row)
                    index += 1
        except (OSError, ValueError, pa.ArrowException) as exc:
            reason = f"damaged row group (rows {index}..{end - 1} lost): {exc}"
            yield Record(f"row group {group}", None, reason, "")
        index = end


def _read_csv(path: Path) -> Iterator[Record]:
    # surrogateescape keeps undecodable bytes visible, so one bad byte costs one row
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, restkey=_EXTRA)
        try:
            header = reader.fieldnames
        except csv.Error as exc:
            raise SourceError(f"{path}: bad CSV header ({exc})") from exc
        if not header:
            raise SourceError(f"{path}: empty CSV")
        # a bad byte in the header would spoil every row's keys: it becomes U+FFFD
        reader.fieldnames = [_undecoded_as_replacement(name) for name in header]
        width = len(header)
        while True:
            starts = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
                yield Record(f"line {starts}", None, f"bad CSV: {exc}", "")
                continue
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


def _undecoded_as_replacement(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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
