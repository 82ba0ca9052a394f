"""Option definitions several commands share: where the records come from and
which columns hold what (ingest, import-traces). One definition each, so the
flags read and behave alike everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from pipeline.ingest import PRESETS
from pipeline.readers import FORMATS

Preset = StrEnum("Preset", {name: name for name in PRESETS})

Hf = Annotated[
    str | None,
    typer.Option(
        "--hf", help="A HF dataset: a save_to_disk folder, a local data folder or a Hub name."
    ),
]
Split = Annotated[str | None, typer.Option(help="Split of the --hf dataset.")]
HfConfig = Annotated[
    str | None,
    typer.Option("--config", "--hf-config", help="Configuration (subset) of the --hf dataset."),
]
PresetOpt = Annotated[
    Preset | None,
    typer.Option(
        "--preset",
        help="Column layout: math (problem/solution/answer, MATH-500), gsm8k (question/answer"
        " with '#### N'), numina (problem/solution with a boxed answer), processbench"
        " (problem/steps/label, no gold answer).",
    ),
]
ProblemCol = Annotated[
    str | None, typer.Option(help="Column with the problem text (default: problem).")
]
AnswerCol = Annotated[
    str | None, typer.Option(help="Column with the gold answer (default: answer).")
]
SolutionCol = Annotated[str | None, typer.Option(help="Column with a reference solution.")]
IdCol = Annotated[str | None, typer.Option(help="Column with the source's own id.")]
Format = Annotated[
    str | None,
    typer.Option(
        "--format", help=f"File format when the extension does not say: {'|'.join(FORMATS)}."
    ),
]
SourceName = Annotated[
    str | None,
    typer.Option(help="Source name recorded with each problem (default: parent/file name)."),
]
