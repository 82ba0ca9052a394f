"""Render the accuracy table of the shipped toy models from their training reports.

python -m pipeline.toy.report          # prints Markdown for data/models/README.md
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.toy.task import LEVELS


def load(models: Path, role: str) -> dict:
    return json.loads((models / f"toy-{role}" / "training_report.json").read_text())


def table(models: Path = Path("data/models")) -> str:
    teacher, student = load(models, "teacher"), load(models, "student")
    lines = [
        "| level | teacher pass@1 (T=1.0) | student pass@1 (T=1.0) | gap | teacher greedy | student greedy |",
        "|---|---|---|---|---|---|",
    ]
    gaps = []
    for lv in LEVELS:
        t, s = (
            teacher["eval_temperature_1"][lv.name]["pass"],
            student["eval_temperature_1"][lv.name]["pass"],
        )
        gaps.append(t - s)
        tg, sg = teacher["eval_greedy"][lv.name]["pass"], student["eval_greedy"][lv.name]["pass"]
        lines.append(f"| {lv.name} | {t:.1%} | {s:.1%} | {t - s:+.1%} | {tg:.1%} | {sg:.1%} |")
    lines.append(f"| **mean** | | | **{sum(gaps) / len(gaps):+.1%}** | | |")
    lines += [
        "",
        "First wrong step of the teacher's wrong samples at T=1.0 (step index: count; "
        "the last index of a level is its boxed-answer step):",
        "",
    ]
    width = max(lv.n_ops for lv in LEVELS) + 1
    lines += [
        "| level | " + " | ".join(f"step {i}" for i in range(width)) + " |",
        "|---" * (width + 1) + "|",
    ]
    for lv in LEVELS:
        hist = teacher["eval_temperature_1"][lv.name]["first_error_hist"]
        lines.append(
            f"| {lv.name} | " + " | ".join(str(hist.get(str(i), "")) for i in range(width)) + " |"
        )
    lines += ["", "| | teacher | student |", "|---|---|---|"]
    for key in ("params", "steps", "examples_seen", "train_seconds"):
        lines.append(f"| {key} | {teacher[key]:,} | {student[key]:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
