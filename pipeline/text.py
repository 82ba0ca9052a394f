"""Text normalization shared by every stage that keys rows on text."""

from __future__ import annotations

import re
import unicodedata

_HSPACE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Unicode NFC, LF line ends, runs of horizontal space folded to one,
    lines stripped, no more than one blank line in a row, ends trimmed.

    Line structure is kept: it carries meaning in tables and step lists.
    """
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def normalize_answer(answer: str) -> str:
    """A gold answer on one line: NFC and all whitespace folded to single spaces."""
    answer = unicodedata.normalize("NFC", answer)
    return " ".join(answer.split())


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None
