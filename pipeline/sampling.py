"""What every sampling backend shares: the request, the result, prompts and seeds.

A backend takes prompts with per-request sampling parameters (``n`` samples
and a seed each) and returns, per prompt, ``n`` completions with their finish
reason, token counts and latency. Backends live in ``pipeline/backends/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from pipeline.config import TeacherSettings
from pipeline.keys import content_key

_T = TeacherSettings()  # the defaults live in the settings, declared once
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TEMPLATES = ("chat", "boxed", "raw")


@dataclass(frozen=True)
class SamplingParams:
    """The parameters that define a trace set; part of every trace's key.

    ``seed`` is the base seed: request seeds derive from it, the problem and
    the sample index, so a resumed run asks for exactly what it asked before.
    """

    temperature: float = _T.temperature
    top_p: float = _T.top_p
    max_tokens: int = _T.max_tokens
    seed: int = _T.seed
    template: str = _T.template

    @classmethod
    def from_settings(cls, teacher: TeacherSettings) -> SamplingParams:
        """The teacher's (``[teacher]``)."""
        t = teacher
        return cls(t.temperature, t.top_p, t.max_tokens, t.seed, t.template)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    prompt: str
    n: int
    seed: int


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # stop / length / error
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None  # wall time of the request (batched: of its batch); None: imported


@dataclass(frozen=True)
class Failed:
    """A request that cannot succeed as sent: the server rejected it (HTTP 400) or
    kept answering it with something unusable. None of its samples are kept."""

    reason: str


class GenerationFailed(RuntimeError):
    """Some requests did not complete. ``results`` holds, per request, its
    completions, a :class:`Failed`, or None when it never finished."""

    def __init__(self, message: str, results: list[list[Completion] | Failed | None]):
        super().__init__(message)
        self.results = results

    def __reduce__(self):  # crosses process boundaries (replicas, Ray) intact
        return type(self), (str(self), self.results)


class ServerUnavailable(GenerationFailed):
    """The server cannot be used: unreachable, silent past the deadline, failing
    (5xx, 429) through every retry, or refusing the key, model or URL. Nothing
    more is sent; ``results`` keeps what finished before."""


class Backend(Protocol):
    model: str  # recorded with every trace

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        """``n`` completions per request, or :class:`GenerationFailed` (a server
        backend) carrying what finished."""
        ...

    def render(self, problem: str, template: str) -> str: ...


def request_seed(base: int, problem_id: str, first_index: int) -> int:
    """A 31-bit seed for the request that starts at sample ``first_index`` of a problem."""
    return int(content_key("seed", base, problem_id, first_index)[:8], 16) & 0x7FFFFFFF


def render_prompt(tokenizer, problem: str, template: str) -> str:
    """The exact text the model sees. ``chat``: the model's chat template with the
    problem as the user turn; ``boxed``: the same with the step-by-step, boxed-answer
    instruction appended; ``raw``: the problem text alone."""
    if template == "raw":
        return problem
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; use one of {', '.join(TEMPLATES)}")
    content = problem if template == "chat" else f"{problem}\n{BOXED_INSTRUCTION}"
    if getattr(tokenizer, "chat_template", None) is None:
        return content
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
