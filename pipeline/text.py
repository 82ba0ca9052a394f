"""Text normalization shared by every stage that keys rows on text."""

from __future__ import annotations

import re
import unicodedata

_HSPACE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")
# C0 and C1 controls but the whitespace ones (tab, line ends, \v, \f): NUL and the
# like come from broken extraction, carry no meaning and upset tokenizers.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def normalize_text(text: str) -> str:
    """Unicode NFC, control characters dropped, LF line ends, runs of horizontal
    space folded to one, lines stripped, no more than one blank line in a row, ends trimmed.

    Line structure is kept: it carries meaning in tables and step lists.
    """
    text = unicodedata.normalize("NFC", _CONTROLS.sub("", text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def normalize_answer(answer: str) -> str:
    """A gold answer on one line: NFC, control characters dropped, all whitespace
    folded to single spaces."""
    answer = unicodedata.normalize("NFC", _CONTROLS.sub("", answer))
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
