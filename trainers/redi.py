"""REDI (Reinforcement Distillation), stage 2: a reference-free loss on (prompt, chosen, rejected).

Per pair, with logp the sum of the completion's token log-probs and |y| its
length in tokens including EOS (the prompt excluded):

    L = -alpha_chosen * logp(y+|x) / |y+|  +  alpha_rejected * logp(y-|x) / |y-|

averaged over the batch. The paper's defaults: alpha_rejected 0.8 (1.0 collapses
at lr 1e-6), learning rate 1e-6, one epoch, from an SFT checkpoint (stage 1).

No reference model exists here: nothing is created, loaded or run besides the
policy. The data path is TRL's: completions get EOS, the prompt is the common
token prefix, and `DataCollatorForPreference` stacks chosen over rejected, so
both go through the model in one forward pass; the per-token log-probs come from
TRL's fused LM head, without the (batch, length, vocab) logits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, set_seed
from trl.trainer.base_config import _BaseConfig
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model


@dataclass
class REDIConfig(_BaseConfig):
    """TRL's common trainer defaults (bf16 where it runs, gradient checkpointing,
    logging every 10 steps) with REDI's own and its two weights."""

    learning_rate: float = field(default=1e-6, metadata={"help": "REDI: 1e-6"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "REDI: one epoch"})
    alpha_chosen: float = field(default=1.0, metadata={"help": "weight of -logp(y+)/|y+|"})
    alpha_rejected: float = field(
        default=0.8, metadata={"help": "weight of logp(y-)/|y-| (1.0 collapses at lr 1e-6)"}
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "prompt + completion tokens; longer are truncated"}
    )
    truncation_mode: str = field(default="keep_start", metadata={"help": "keep_start | keep_end"})
    disable_dropout: bool = field(default=True, metadata={"help": "as TRL's DPO does"})
    # the tokenized columns are the only ones left; the Trainer must not drop them
    remove_unused_columns: bool = False


def tokenize_pairs(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """prompt_ids / chosen_ids / rejected_ids, as TRL's DPO prepares plain-text pairs
    (the tokenizer adds its special tokens, as TRL lets it)."""
    eos = tokenizer.eos_token

    def one(row: dict) -> dict:
        prompt = tokenizer(row["prompt"])["input_ids"]
        ids = {}
        for side in ("chosen", "rejected"):
            text = row[side] if row[side].endswith(eos) else row[side] + eos
            ids[side] = tokenizer(row["prompt"] + text)["input_ids"]
        # the completion starts where the tokens stop agreeing (tokens may merge across the boundary)
        n = min(_common_prefix(prompt, ids["chosen"]), _common_prefix(prompt, ids["rejected"]))
        return {
            "prompt_ids": prompt[:n],
            "chosen_ids": ids["chosen"][n:],
            "rejected_ids": ids["rejected"][n:],
        }

    return dataset.map(one, remove_columns=dataset.column_names, desc="Tokenizing pairs")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def redi_loss(
    per_token_logps: torch.Tensor,
    completion_mask: torch.Tensor,
    alpha_chosen: float,
    alpha_rejected: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's loss and each pair's length-normalized chosen and rejected
    log-probs. Rows are [chosen..., rejected...]; ``per_token_logps`` is zero
    outside the completion and aligned with ``completion_mask``."""
    lengths = completion_mask.sum(dim=1).clamp(min=1)
    mean_logps = (per_token_logps * completion_mask).sum(dim=1) / lengths
    chosen, rejected = mean_logps.chunk(2, dim=0)
    loss = (-alpha_chosen * chosen + alpha_rejected * rejected).mean()
    return loss, chosen, rejected


class REDITrainer(Trainer):
    """A `transformers.Trainer` whose loss is REDI's; the policy is the only model."""

    # the loss is a mean per batch: the Trainer divides it over accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        args: REDIConfig,
        train_dataset: Dataset,
        processing_class: PreTrainedTokenizerBase,
        peft_config=None,
        **kwargs,
    ):
        set_seed(args.seed)  # before PEFT draws the adapter's initial weights, as TRL does
        add_fused_lm_head(model)  # before PEFT wraps it, as TRL does
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        if args.disable_dropout:  # after wrapping: the adapter's dropout too
            disable_dropout_in_model(model)
        pairs = tokenize_pairs(train_dataset, processing_class)
        if args.max_length is not None and args.truncation_mode == "keep_start":
            # a prompt that fills max_length leaves no completion token to score (TRL's DPO drops it too)
            pairs = pairs.filter(lambda r: len(r["prompt_ids"]) < args.max_length)
        collator = DataCollatorForPreference(
            pad_token_id=processing_class.pad_token_id
            if processing_class.pad_token_id is not None
            else processing_class.eos_token_id,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=pairs,
            processing_class=processing_class,
            **kwargs,
        )
        self._metrics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(mask == 0, -100)
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=labels,
            use_cache=False,
            fused_lm_head=True,
        )
        shift_mask = mask[:, 1:]  # the log-prob at t scores token t + 1
        per_token = outputs.log_probs[:, -shift_mask.size(1) :]
        loss, chosen, rejected = redi_loss(
            per_token, shift_mask, self.args.alpha_chosen, self.args.alpha_rejected
        )
        mode = "train" if model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        chosen, rejected = gather(chosen.detach()), gather(rejected.detach())
        self._metrics[mode]["logps/chosen"].append(chosen.mean().item())
        self._metrics[mode]["logps/rejected"].append(rejected.mean().item())
        self._metrics[mode]["logps/margin"].append((chosen - rejected).mean().item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()
