"""Tiny Llama models and their tokenizer, in plain HF format."""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, USER, ASSISTANT = "<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"
SPECIALS = [PAD, BOS, EOS, UNK, USER, ASSISTANT]
# every printable ASCII character and newline: any prompt can be encoded
CHARS = list(string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", ""))
# every 1-3 digit string: a number up to 999 is one token, so a step's arithmetic
# is one lookup. Character-level digits (DESIGN's first choice) made the model
# learn carries from scratch: after 600 steps of a 4.2M model it solved 8% of
# 1-operation problems and none longer (data/models/README.md).
NUMBERS = list(dict.fromkeys(f"{i:0{w}d}" for w in (1, 2, 3) for i in range(10**w)))
WORD_MERGES = (
    60  # BPE merges on top of the characters: enough to make the task's words single tokens
)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """Characters, whole numbers up to three digits, and the corpus's frequent words.

    Any ASCII text still encodes (unknown words fall back to characters) and
    decodes back exactly.
    """
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # pieces: digit groups of up to three, runs of letters, any other single character
    tok.pre_tokenizer = pre_tokenizers.Split(
        Regex(r"\d{1,3}|[A-Za-z]+|[\s\S]"), behavior="isolated"
    )
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=len(SPECIALS) + len(CHARS) + WORD_MERGES,
        special_tokens=SPECIALS,
        initial_alphabet=CHARS,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens(NUMBERS)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        model_max_length=1024,
        padding_side="left",
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


@dataclass(frozen=True)
class ModelSize:
    layers: int
    heads: int  # head_dim is 64: vLLM's CPU attention rejects smaller heads
    intermediate: int

    @property
    def hidden(self) -> int:
        return self.heads * 64


def build_model(
    tokenizer: PreTrainedTokenizerFast, size: ModelSize, max_len: int = 1024
) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        head_dim=64,
        max_position_embeddings=max_len,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def prompt_text(tokenizer: PreTrainedTokenizerFast, problem: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
    )


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
