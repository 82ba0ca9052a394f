"""One offline fine-tune: an export's config, a base model, a checkpoint folder with its lineage.

    train("redi", "ckpt/sft", "data/export", "ckpt/redi", TrainSettings())

Kinds: ``sft`` (TRL's SFTTrainer with DART weights), ``dpo`` / ``step-dpo`` /
``first-pit`` (TRL's DPOTrainer on the outcome / step / first_pit configs) and
``redi`` (trainers/redi.py). A recipe chains kinds, each stage starting from
the previous stage's checkpoint. Runs unchanged under ``accelerate launch``.

The folder holds the model and tokenizer as ``from_pretrained`` loads them and
``pitfall_train.json``: the base model (and its own lineage when pitfall trained
it), the data's source and fingerprint, every hyperparameter, the seed, library
versions, steps, seconds and the losses.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipeline.config import TrainSettings
from pipeline.evaluation import LINEAGE_FILE  # pitfall eval reads it
from trainers.data import NEEDS, DataError, TrainData, load_train_data, without_doubled_bos

KINDS = {
    "sft": "SFT on the sft config's prompt / completion, loss weighted by its DART weight",
    "dpo": "DPO (TRL) on the outcome config: first correct vs first incorrect trace",
    "step-dpo": "Step-DPO: DPO (TRL) on the step config, the completion is one step",
    "first-pit": "DPO (TRL) on the first_pit config (Setlur et al.)",
    "redi": "REDI's reference-free loss on the outcome config (run it from an SFT checkpoint)",
}
RECIPES = {"redi": ("sft", "redi")}  # REDI: stage 1 SFT on the positives, stage 2 REDI
LIBRARIES = ("pitfall", "torch", "transformers", "trl", "accelerate", "datasets", "peft")


class TrainError(ValueError):
    """A model or option that cannot be trained; the message says what is wrong."""


@dataclass
class Trained:
    kind: str
    out: Path
    steps: int
    seconds: float
    final_loss: float | None
    dropped: dict[str, int]
    main: bool = True  # the process that saved (under `accelerate launch`, rank 0)


def train(
    kind: str, model: str, data: str, out: str | Path, options: TrainSettings | None = None
) -> Trained:
    """Fine-tune ``model`` on the export ``data`` (folder or Hub repo) as ``kind``; save to ``out``."""
    if kind not in KINDS:
        raise TrainError(f"unknown kind {kind!r}; use {', '.join(KINDS)}")
    options = options or TrainSettings()
    out = Path(out)
    _check_model(model)
    rows = load_train_data(data, kind)  # before any model loads: bad data fails fast
    policy, tokenizer = _load(model)
    without_doubled_bos(rows, tokenizer)
    args = _arguments(kind, options, out)
    trainer = _trainer(kind, policy, tokenizer, rows, args, options)
    if left_out := rows.dataset.num_rows - len(trainer.train_dataset):
        rows.dropped["prompt fills max_length"] = left_out  # no completion token would be left
    start = time.monotonic()

    def lineage() -> dict:
        return _lineage(kind, model, rows, args, options, trainer, time.monotonic() - start)

    for callback in _callbacks(lineage):
        trainer.add_callback(callback)
    trainer.train()
    _save(trainer, tokenizer, out, model, options)
    record = lineage()
    trained = Trained(
        kind,
        out,
        record["steps"],
        record["seconds"],
        record["loss"]["final"],
        rows.dropped,
        trainer.is_world_process_zero(),
    )
    if trained.main:
        (out / LINEAGE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()  # a recipe's next stage loads this folder on every rank
    _free(trainer)
    return trained


def run_recipe(
    name: str, model: str, data: str, out: str | Path, options: TrainSettings | None = None
) -> list[Trained]:
    """The stages of recipe ``name``, each from the previous checkpoint: ``out/1-sft``, ``out/2-redi``."""
    if name not in RECIPES:
        raise TrainError(f"unknown recipe {name!r}; use {', '.join(RECIPES)}")
    for kind in RECIPES[name]:  # every stage's data is checked before the first trains
        load_train_data(data, kind)
    done, base = [], model
    for i, kind in enumerate(RECIPES[name], 1):
        stage = train(kind, base, data, Path(out) / f"{i}-{kind}", options)
        done.append(stage)
        base = str(stage.out)
    return done


def _check_model(model: str) -> None:
    """A path that is not a folder fails here; an org/name is left to the Hub,
    unless its org is a local folder (ckpt/sft, mistyped)."""
    local = Path(model)
    looks_local = model.startswith((".", "/")) or model.count("/") > 1
    if not local.is_dir() and (
        local.exists() or looks_local or (local.parent.name and local.parent.is_dir())
    ):
        raise TrainError(f"{model}: no such model folder")


def _load(model: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        policy = AutoModelForCausalLM.from_pretrained(model)
    except (OSError, ValueError) as exc:  # no weights, an unknown model type or Hub id
        raise TrainError(f"{model}: cannot load the model ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return policy, tokenizer


def _arguments(kind: str, o: TrainSettings, out: Path):
    common: dict[str, Any] = {
        "output_dir": str(out),
        "per_device_train_batch_size": o.batch_size,
        "gradient_accumulation_steps": o.grad_accum,
        "max_steps": o.max_steps,
        "seed": o.seed,
        "warmup_steps": o.warmup_ratio,  # a float below 1 is a ratio of the steps
        "logging_steps": o.logging_steps,
        "save_strategy": o.save_strategy,
        "save_steps": o.save_steps,
        "bf16": o.bf16,
        "gradient_checkpointing": o.gradient_checkpointing,
        "report_to": o.report_to,
        "max_length": o.max_length,
        "truncation_mode": o.truncation,
    }
    if o.learning_rate is not None:
        common["learning_rate"] = o.learning_rate
    if o.epochs is not None:
        common["num_train_epochs"] = o.epochs
    if kind == "sft":
        from trl import SFTConfig

        return SFTConfig(**common, completion_only_loss=True, packing=False)
    if kind == "redi":
        from trainers.redi import REDIConfig

        alphas = {"alpha_chosen": o.alpha_chosen, "alpha_rejected": o.alpha_rejected}
        return REDIConfig(**common, **{k: v for k, v in alphas.items() if v is not None})
    from trl import DPOConfig

    return DPOConfig(**common, **({"beta": o.beta} if o.beta is not None else {}))


def _trainer(kind: str, policy, tokenizer, rows: TrainData, args, o: TrainSettings):
    peft_config = _lora(o)
    if kind == "sft":
        from trainers.weighted_sft import WeightedSFTTrainer

        return WeightedSFTTrainer(
            model=policy,
            args=args,
            train_dataset=rows.dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    if kind == "redi":
        from trainers.redi import REDITrainer

        return REDITrainer(
            model=policy,
            args=args,
            train_dataset=rows.dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    from trl import DPOTrainer

    return DPOTrainer(
        model=policy,
        args=args,
        train_dataset=rows.dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _lora(o: TrainSettings):
    if not o.lora:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise TrainError("--lora needs peft: pip install 'pitfall[lora]'") from None
    return LoraConfig(
        r=o.lora_r,
        lora_alpha=o.lora_alpha,
        lora_dropout=o.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _callbacks(lineage) -> list:
    from transformers import TrainerCallback  # heavy: not on the CLI's import path

    class LogEnds(TrainerCallback):
        """A loss logged at the end of every epoch and at the last step, so the
        lineage's final and per-epoch losses exist whatever `logging_steps` is."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_log = True

    class LineageOnSave(TrainerCallback):
        """Intermediate checkpoints (`save_strategy`) carry the lineage so far."""

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                (folder / LINEAGE_FILE).write_text(json.dumps(lineage(), indent=2, default=str))

    return [LogEnds(), LineageOnSave()]


def _save(trainer, tokenizer, out: Path, base: str, o: TrainSettings) -> None:
    """The model and tokenizer as `from_pretrained` loads them. A LoRA adapter is
    saved through the Trainer (which gathers it under DeepSpeed and FSDP) to
    ``out/adapter``, then merged into a fresh copy of the base on one process."""
    if not o.lora:
        trainer.save_model(str(out))
    else:
        adapter = out / "adapter"
        trainer.save_model(str(adapter))
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            fresh = AutoModelForCausalLM.from_pretrained(base)
            PeftModel.from_pretrained(fresh, adapter).merge_and_unload().save_pretrained(out)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)


def _free(trainer) -> None:
    """TRL's fused LM head makes the model a reference cycle: free it now, not when
    the collector gets round to it (a recipe's next stage needs the memory)."""
    import torch

    trainer.accelerator.free_memory()
    trainer.model = trainer.model_wrapped = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _losses(log_history: list[dict]) -> dict:
    """Final, mean and per-epoch training loss from the Trainer's log (the mean of
    the losses logged in each epoch; `_LogEnds` logs at every epoch's end)."""
    logged = [(e["epoch"], e["loss"]) for e in log_history if "loss" in e and "epoch" in e]
    mean = next((e["train_loss"] for e in log_history if "train_loss" in e), None)
    epochs: dict[int, list[float]] = {}
    for epoch, loss in logged:
        epochs.setdefault(max(1, math.ceil(epoch)), []).append(loss)
    return {
        "final": logged[-1][1] if logged else None,
        "mean": mean,
        "per_epoch": [sum(v) / len(v) for _, v in sorted(epochs.items())],
    }


def _lineage(
    kind: str, model: str, rows: TrainData, args, o: TrainSettings, trainer, seconds: float
) -> dict:
    parent = Path(model) / LINEAGE_FILE
    return {
        "kind": kind,
        "base_model": model,
        "base_revision": getattr(trainer.model.config, "_commit_hash", None)
        if trainer.model
        else None,
        "base_lineage": json.loads(parent.read_text()) if parent.is_file() else None,
        "data": {
            "source": rows.source,
            "revision": rows.revision,
            "config": rows.config,
            "fingerprint": rows.fingerprint,
            "rows": rows.dataset.num_rows,
            "dropped": rows.dropped,
        },
        "seed": o.seed,
        "options": o.model_dump(mode="json"),
        "hyperparameters": args.to_dict(),
        "versions": _versions(),
        "world_size": args.world_size,
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 3),
        "loss": _losses(trainer.state.log_history),
    }


def _versions() -> dict[str, str | None]:
    found = {}
    for lib in LIBRARIES:
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            found[lib] = None
    return found


# the Hub's usage pings are off unless a user turns them on
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
__all__ = ["KINDS", "NEEDS", "RECIPES", "DataError", "TrainError", "Trained", "run_recipe", "train"]
