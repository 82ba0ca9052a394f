"""SFT with a weight per example: DART's fail-rate weights from the ``sft`` export.

TRL's `SFTTrainer` with one change to its loss: each example's token losses are
multiplied by its ``weight`` before TRL's own normalisation (the tokens of the
batch, or of the accumulated batches), so

    loss = sum_i w_i * sum_t -logp(y_it) / N_tokens

which is TRL's plain loss when every weight is 1 (the export's weights have
mean 1, so the learning rate keeps its meaning). The loss covers the completion
only. Packing would mix examples in one row, so it is not offered; TRL's other
losses (dft, label smoothing, MoE aux) are refused rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

WEIGHT = "weight"


class WeightCollator(DataCollatorForLanguageModeling):
    """TRL's collator, plus the examples' weights as a (batch,) tensor."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        if WEIGHT in examples[0]:
            out[WEIGHT] = torch.tensor([float(e[WEIGHT]) for e in examples])
        return out


class WeightedSFTTrainer(SFTTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # TRL's own collator (its pad token and padding settings), carrying the weights too
        plain = self.data_collator
        if type(plain) is DataCollatorForLanguageModeling:
            self.data_collator = WeightCollator(
                **{f.name: getattr(plain, f.name) for f in fields(plain)}
            )
        if self.args.loss_type != "nll" or self.label_smoother is not None or self.aux_loss_enabled:
            raise ValueError("weighted SFT takes TRL's plain nll loss only")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if WEIGHT not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, WEIGHT]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weight = inputs.pop(WEIGHT, None)
        if weight is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        per_token_loss = -outputs.log_probs * weight.to(outputs.log_probs.dtype)[:, None]
        # TRL's normalisation, unchanged: the batch's completion tokens, or every
        # accumulated batch's when the Trainer passes their count
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        # TRL's token metrics, as its own loss path logs them
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.label_mask.sum()).sum()
        if valid > 0:
            entropy = gather(outputs.entropy.detach().sum()).sum()
            correct = gather(outputs.is_top1.sum()).sum()
            self._metrics[mode]["entropy"].append((entropy / valid).item())
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item())
        return (loss, outputs) if return_outputs else loss
