"""Step segmentation: a completion becomes a list of steps with character offsets.

Modes: ``blank`` (paragraphs between blank lines, the default and what
ProcessBench and R1-style traces use) and ``markers`` (a new step at each
``Step k:`` line). Lists that come pre-split (imported step lists) are kept
exactly as given (:func:`given_steps`).

Two clean-ups follow, in order. Fragments shorter than ``min_chars`` ("So:",
"Wait,") join their following step (the last one joins its predecessor).
Traces with more steps than ``max_steps`` are then cut into at most that many
pieces of similar token length, as OmegaPRM does for long solutions, so a
binary search over prefixes stays O(log max_steps).

Offsets index into the completion: the prefix of the first ``p`` steps is
``completion[:steps[p].start]``, separators included, which is the exact text
a rollout continues from.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

from pipeline.config import SegmentSettings
from pipeline.rows import STEP_SCHEMA, step_rows

Mode = Literal["blank", "markers"]
_S = SegmentSettings()  # the defaults live in the settings, declared once

_BLANK = re.compile(r"\n[ \t]*\n")
_MARKER = re.compile(r"(?im)^[ \t]*(?:[#*]+[ \t]*)?step[ \t]+\d+[ \t]*[:.)]")
# a rough, tokenizer-free count (words and punctuation); only relative sizes matter here
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Step:
    start: int  # offsets into the completion, whitespace around the step excluded
    end: int
    n_tokens: int


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def segment(
    text: str,
    mode: Mode = _S.mode,
    min_chars: int = _S.min_chars,
    max_steps: int | None = _S.max_steps,
) -> list[Step]:
    spans = _split(text, mode)
    spans = _merge_short(spans, min_chars)
    if max_steps and len(spans) > max_steps:
        spans = _budget(text, spans, max_steps)
    return [Step(s, e, count_tokens(text[s:e])) for s, e in spans]


def budget_share(
    text: str,
    mode: Mode = _S.mode,
    min_chars: int = _S.min_chars,
    max_steps: int | None = _S.max_steps,
) -> float | None:
    """Tokens per step when :func:`segment` cuts ``text`` to its ``max_steps``
    budget; None when it keeps the (merged) paragraphs as steps."""
    spans = _merge_short(_split(text, mode), min_chars)
    if not max_steps or len(spans) <= max_steps:
        return None
    return sum(max(1, count_tokens(text[s:e])) for s, e in spans) / max_steps


def first_step(text: str, mode: Mode, min_chars: int, share: float | None) -> str:
    """The first step of a continuation, cut by the rule its trace was cut by: the
    first (merged) paragraph, or, for a trace cut to a budget (``share`` tokens per
    step), the run of first paragraphs whose size is nearest to that share."""
    spans = _merge_short(_split(text, mode), min_chars)
    if not spans:
        return ""
    end = spans[0][1]
    if share:
        total, best = 0, None
        for s, e in spans:
            total += max(1, count_tokens(text[s:e]))
            if best is not None and abs(total - share) >= best:
                break
            best, end = abs(total - share), e
    return text[spans[0][0] : end]


def given_steps(steps: list[str]) -> tuple[str, list[Step]]:
    """The completion for a pre-split list (steps joined by a blank line, what
    ``blank`` mode splits on), and its steps exactly as given."""
    separator = "\n\n"
    out, pos = [], 0
    for i, step in enumerate(steps):
        if i:
            pos += len(separator)
        out.append(Step(pos, pos + len(step), count_tokens(step)))
        pos += len(step)
    return separator.join(steps), out


def segment_traces(
    traces: pl.DataFrame,
    mode: Mode = _S.mode,
    min_chars: int = _S.min_chars,
    max_steps: int | None = _S.max_steps,
) -> pl.DataFrame:
    """Step rows for ``traces`` (trace_id, completion)."""
    rows: list[dict] = []
    for trace_id, completion in traces.select("trace_id", "completion").iter_rows():
        rows.extend(
            step_rows(trace_id, completion, segment(completion, mode, min_chars, max_steps))
        )
    return pl.DataFrame(rows, schema=STEP_SCHEMA)


def prefix_text(completion: str, starts: list[int], prefix_len: int) -> str:
    """The completion up to (not including) step ``prefix_len``, separators kept."""
    return completion[: starts[prefix_len]] if prefix_len < len(starts) else completion


# ------------------------------------------------------------------ internals


def _split(text: str, mode: Mode) -> list[tuple[int, int]]:
    if mode == "blank":
        bounds, pos = [], 0
        for m in _BLANK.finditer(text):
            bounds.append((pos, m.start()))
            pos = m.end()
        bounds.append((pos, len(text)))
    elif mode == "markers":
        cuts = [m.start() for m in _MARKER.finditer(text)]
        if not cuts or cuts[0] > 0:
            cuts = [0, *cuts]
        bounds = list(zip(cuts, [*cuts[1:], len(text)], strict=True))
    else:
        raise ValueError(f"unknown segmentation mode {mode!r}; use blank or markers")
    return [s for s in (_strip(text, a, b) for a, b in bounds) if s is not None]


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _merge_short(spans: list[tuple[int, int]], min_chars: int):
    merged: list[tuple[int, int]] = []
    carry: int | None = None  # start of short fragments waiting for the next step
    for s, e in spans:
        start = s if carry is None else carry
        if e - s < min_chars:
            carry = start
            continue
        merged.append((start, e))
        carry = None
    if carry is not None:  # short fragments at the end join the last step
        if merged:
            merged[-1] = (merged[-1][0], spans[-1][1])
        else:
            merged.append((carry, spans[-1][1]))
    return merged


def _budget(text: str, spans: list[tuple[int, int]], pieces: int) -> list[tuple[int, int]]:
    """At most ``pieces`` runs of consecutive steps, cut at the step boundaries
    nearest to equal shares of the token count."""
    sizes = [max(1, count_tokens(text[s:e])) for s, e in spans]
    cumulative, total = [], 0
    for n in sizes:
        total += n
        cumulative.append(total)
    cuts, last = [], 0  # cut after step index cuts[j]-1
    for j in range(1, pieces):
        goal = total * j / pieces
        best = min(range(last + 1, len(spans)), key=lambda b: abs(cumulative[b - 1] - goal))
        if best > last:
            cuts.append(best)
            last = best
        if last >= len(spans) - 1:
            break
    bounds = [0, *cuts, len(spans)]
    return [(spans[a][0], spans[b - 1][1]) for a, b in itertools.pairwise(bounds) if b > a]
