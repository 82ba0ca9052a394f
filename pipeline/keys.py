"""Deterministic row keys: a content hash of the parts that define a row.

Each table's own key function is in ``pipeline/rows.py``.

The same parts always give the same key, on any machine and in any release, so
re-running a stage finds its earlier rows instead of writing them again. Keys
are 128-bit BLAKE2b digests in hex: at a billion rows the chance of any
collision is still about 1e-21.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _canonical(part: Any) -> str:
    if isinstance(part, str):
        return part
    # dicts (sampling params, ...) hash by content, not by key order
    return json.dumps(part, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(kind: str, *parts: Any) -> str:
    """Key of a row of ``kind`` defined by ``parts`` (strings, numbers, dicts, None).

    Parts are length-prefixed so ("ab", "c") and ("a", "bc") differ.
    """
    h = hashlib.blake2b(digest_size=16)
    for piece in (kind, *parts):
        data = _canonical(piece).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def params_key(params: dict) -> str:
    return content_key("params", params)
