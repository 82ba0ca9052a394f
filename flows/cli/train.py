"""`pitfall train`: one-shot offline fine-tunes on an export (trainers/), never the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import BAD_INPUT, _fail, _override, out
from trainers.data import DataError
from trainers.train import KINDS, RECIPES, Trained, TrainError

_KIND_HELP = "; ".join(f"[bold]{k}[/bold]: {v}" for k, v in KINDS.items())
_RECIPE_HELP = "; ".join(f"[bold]recipe {k}[/bold]: {' -> '.join(v)}" for k, v in RECIPES.items())


def train(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"{_KIND_HELP}; or recipe NAME.", show_default=False)],
    recipe: Annotated[
        str | None, typer.Argument(help=f"with kind `recipe`: {', '.join(RECIPES)}.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Base model: a folder or a Hub id (default: \\[train] model)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="An export folder or a Hub dataset repo (default: \\[export] dir)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Checkpoint folder (default: \\[train] out_dir/KIND)."),
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Unset: the trainer's own.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Unset: the trainer's own.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="-1: epochs decide.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per device.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    truncation: Annotated[str | None, typer.Option(help="keep_start | keep_end.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    warmup_ratio: Annotated[float | None, typer.Option()] = None,
    logging_steps: Annotated[int | None, typer.Option()] = None,
    save_strategy: Annotated[str | None, typer.Option(help="no | steps | epoch.")] = None,
    save_steps: Annotated[int | None, typer.Option()] = None,
    beta: Annotated[float | None, typer.Option(help="DPO's beta.")] = None,
    alpha_chosen: Annotated[float | None, typer.Option(help="REDI (default 1.0).")] = None,
    alpha_rejected: Annotated[float | None, typer.Option(help="REDI (default 0.8).")] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", show_default=False)] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", show_default=False),
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--no-lora", help="peft LoRA.", show_default=False)
    ] = None,
    lora_r: Annotated[int | None, typer.Option()] = None,
    lora_alpha: Annotated[int | None, typer.Option()] = None,
    lora_dropout: Annotated[float | None, typer.Option()] = None,
    report_to: Annotated[
        list[str] | None, typer.Option(help="none | wandb | tensorboard (repeatable).")
    ] = None,
) -> None:
    """Fine-tune a model on an export: SFT (DART-weighted), DPO, Step-DPO,
    first-pit DPO or REDI; `pitfall train recipe redi` runs SFT then REDI.

    Every checkpoint folder loads with `from_pretrained` and holds
    `pitfall_train.json` (base model, data fingerprint, hyperparameters,
    versions, steps, losses). Settings come from \\[train]; flags override them.
    Runs unchanged under `accelerate launch` (see README).
    """
    flags = {
        k: v for k, v in locals().items() if k not in {"ctx", "kind", "recipe", "data", "out_dir"}
    }
    settings = _override(ctx, train=flags)
    o = settings.train
    source = data or str(settings.export.dir)
    from trainers.train import run_recipe
    from trainers.train import train as train_one

    try:
        if kind == "recipe":
            if recipe not in RECIPES:
                raise TrainError(f"name a recipe: pitfall train recipe {{{','.join(RECIPES)}}}")
            folder = out_dir or o.out_dir / f"recipe-{recipe}"
            done = run_recipe(recipe, o.model, source, folder, o)
        else:
            if recipe is not None:
                raise TrainError(f"unexpected {recipe!r} after {kind!r}")
            done = [train_one(kind, o.model, source, out_dir or o.out_dir / kind, o)]
    except (DataError, TrainError) as exc:
        raise _fail(escape(str(exc)), BAD_INPUT) from None
    if done[-1].main:  # under `accelerate launch`, one table
        _print(done)


def _print(done: list[Trained]) -> None:
    table = Table(title="train")
    for col in ("kind", "steps", "seconds", "final loss", "dropped", "checkpoint"):
        table.add_column(col)
    for t in done:
        dropped = ", ".join(f"{n} {why}" for why, n in t.dropped.items()) or "-"
        loss = "-" if t.final_loss is None else f"{t.final_loss:.4f}"
        table.add_row(t.kind, str(t.steps), f"{t.seconds:.1f}", loss, dropped, str(t.out))
    out.print(table)


COMMANDS = {"train": train}
