"""Row shapes and keys of the tables the stages write: one section per table.

Each table has its Polars schema (the store's columns minus ``run_id`` and
``created_at``, which the store fills), its key function and its row builder
here; :data:`SCHEMAS` lists them and a test checks each against the DuckDB
table. Keys are content hashes (:func:`pipeline.keys.content_key`), so a rerun
finds its earlier rows, and they must never change (a test pins some).
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from pipeline.keys import content_key, params_key
from pipeline.sampling import Completion

RAW_CHARS = 2000  # what a quarantine row keeps of the bad input

# ------------------------------------------------------------------ problems

PROBLEM_SCHEMA = {
    "problem_id": pl.String,
    "problem": pl.String,
    "answer": pl.String,
    "solution": pl.String,
    "source": pl.String,
    "source_id": pl.String,
    "meta": pl.String,
}


def problem_key(problem: str, answer: str) -> str:
    """Key of a problem: its normalized text and normalized gold answer."""
    return content_key("problem", problem, answer)


# The problem row itself is built by pipeline.ingest.problem_row: it is the
# normalization and validation of a source record.

# ---------------------------------------------------------------- quarantine

QUARANTINE_SCHEMA = {
    "quarantine_id": pl.String,
    "stage": pl.String,
    "source": pl.String,
    "locator": pl.String,
    "reason": pl.String,
    "raw": pl.String,
}


def quarantine_key(stage: str, source: str, locator: str, reason: str, raw: str) -> str:
    return content_key("quarantine", stage, source, locator, reason, raw)


def quarantine_row(
    stage: str, source: str, locator: str, reason: str, raw: str | None
) -> dict[str, Any]:
    raw = storable(raw or "")[:RAW_CHARS]
    reason = storable(reason)
    return {
        "quarantine_id": quarantine_key(stage, source, locator, reason, raw),
        "stage": stage,
        "source": source,
        "locator": locator,
        "reason": reason,
        "raw": raw,
    }


def storable(text: str) -> str:
    """Valid UTF-8: a lone surrogate is written out as its escape (``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


TRACE_SCHEMA = {
    "trace_id": pl.String,
    "problem_id": pl.String,
    "model": pl.String,
    "params_id": pl.String,
    "params": pl.String,
    "sample_index": pl.Int32,
    "prompt": pl.String,
    "completion": pl.String,
    "finish_reason": pl.String,
    "prompt_tokens": pl.Int32,
    "completion_tokens": pl.Int32,
    "latency_s": pl.Float64,
    "origin": pl.String,
}
VERDICT_SCHEMA = {
    "verdict_id": pl.String,
    "trace_id": pl.String,
    "verifier": pl.String,
    "status": pl.String,
    "extracted": pl.String,
    "seconds": pl.Float64,
    "detail": pl.String,
}
FIRST_ERROR_SCHEMA = {
    "first_error_id": pl.String,
    "trace_id": pl.String,
    "method": pl.String,
    "first_error": pl.Int32,
    "n_rollouts": pl.Int32,
    "rollout_tokens": pl.Int64,
    "detail": pl.String,
}
FAILED_REQUEST_SCHEMA = {
    "failure_id": pl.String,
    "problem_id": pl.String,
    "model": pl.String,
    "params_id": pl.String,
    "first_index": pl.Int32,
    "n": pl.Int32,
    "reason": pl.String,
}


# ------------------------------------------------------------------- traces


def trace_key(problem_id: str, model: str, params: dict, sample_index: int) -> str:
    return content_key("trace", problem_id, model, params, sample_index)


def trace_row(
    problem_id: str,
    model: str,
    params: dict,
    sample_index: int,
    prompt: str,
    completion: Completion,
    origin: str = "sampled",
) -> dict[str, Any]:
    """Sample ``sample_index`` of a problem under one model and sampling setup
    (``params``: the sampling parameters, or where imported traces came from)."""
    return {
        "trace_id": trace_key(problem_id, model, params, sample_index),
        "problem_id": problem_id,
        "model": model,
        "params_id": params_key(params),
        "params": json.dumps(params),
        "sample_index": sample_index,
        "prompt": prompt,
        "completion": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "latency_s": completion.latency_s,
        "origin": origin,
    }


def imported_completion(text: str) -> Completion:
    """A generation that came with the data: no token counts, no latency."""
    return Completion(text, "imported", None, None, None)


def trace_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TRACE_SCHEMA)


# ------------------------------------------------------------------- verdicts


def verdict_key(trace_id: str, verifier: str) -> str:
    return content_key("verdict", trace_id, verifier)


def verdict_row(trace_id: str, verifier: str, status: str, **found: Any) -> dict[str, Any]:
    """``found``: extracted answer, seconds and detail when a verifier ran."""
    return {
        "verdict_id": verdict_key(trace_id, verifier),
        "trace_id": trace_id,
        "verifier": verifier,
        "status": status,
        "extracted": found.get("extracted"),
        "seconds": found.get("seconds"),
        "detail": found.get("detail"),
    }


def verdict_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=VERDICT_SCHEMA)


# --------------------------------------------------------------- first errors


def first_error_key(trace_id: str, method: str) -> str:
    return content_key("first_error", trace_id, method)


def first_error_row(
    trace_id: str, method: str, first_error: int | None, n_rollouts: int, tokens: int, detail: dict
) -> dict[str, Any]:
    return {
        "first_error_id": first_error_key(trace_id, method),
        "trace_id": trace_id,
        "method": method,
        "first_error": first_error,
        "n_rollouts": n_rollouts,
        "rollout_tokens": tokens,
        "detail": json.dumps(detail),
    }


def first_error_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FIRST_ERROR_SCHEMA)


# ------------------------------------------------------------ failed requests


def failed_request_row(
    problem_id: str, model: str, params_id: str, first_index: int, n: int, reason: str, run_id: str
) -> dict[str, Any]:
    """A request that wrote no trace, per run: a rerun that fails again adds its own row."""
    parts = (problem_id, model, params_id, first_index, n, run_id)
    return {
        "failure_id": content_key("failed_request", *parts),
        "problem_id": problem_id,
        "model": model,
        "params_id": params_id,
        "first_index": first_index,
        "n": n,
        "reason": reason,
    }


def failed_request_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FAILED_REQUEST_SCHEMA)


# --------------------------------------------------------------------- steps

STEP_SCHEMA = {
    "step_id": pl.String,
    "trace_id": pl.String,
    "step_index": pl.Int32,
    "text": pl.String,
    "char_start": pl.Int32,
    "char_end": pl.Int32,
    "n_tokens": pl.Int32,
}


def step_key(trace_id: str, index: int) -> str:
    return content_key("step", trace_id, index)


def step_rows(trace_id: str, text: str, steps: list) -> list[dict]:
    """One row per step of ``text`` (``steps``: spans with start, end, n_tokens)."""
    return [
        {
            "step_id": step_key(trace_id, i),
            "trace_id": trace_id,
            "step_index": i,
            "text": text[s.start : s.end],
            "char_start": s.start,
            "char_end": s.end,
            "n_tokens": s.n_tokens,
        }
        for i, s in enumerate(steps)
    ]


# ------------------------------------------------------------------ rollouts

ROLLOUT_SCHEMA = {
    "rollout_id": pl.String,
    "trace_id": pl.String,
    "prefix_len": pl.Int32,
    "policy": pl.String,
    "rollout_index": pl.Int32,
    "completion": pl.String,
    "finish_reason": pl.String,
    "completion_tokens": pl.Int32,
    "correct": pl.Boolean,
}


def rollout_key(trace_id: str, prefix_len: int, policy: str, index: int) -> str:
    return content_key("rollout", trace_id, prefix_len, policy, index)


def rollout_row(
    trace_id: str, prefix_len: int, policy: str, index: int, completion: Completion
) -> dict[str, Any]:
    """Rollout ``index`` from the first ``prefix_len`` steps of a trace; ``correct``
    is set once it is verified."""
    return {
        "rollout_id": rollout_key(trace_id, prefix_len, policy, index),
        "trace_id": trace_id,
        "prefix_len": prefix_len,
        "policy": policy,
        "rollout_index": index,
        "completion": completion.text,
        "finish_reason": completion.finish_reason,
        "completion_tokens": completion.completion_tokens or 0,
        "correct": None,
    }


# --------------------------------------------------------------- step values

STEP_VALUE_SCHEMA = {
    "value_id": pl.String,
    "trace_id": pl.String,
    "prefix_len": pl.Int32,
    "policy": pl.String,
    "k": pl.Int32,
    "n_correct": pl.Int32,
    "value": pl.Float64,
}


def step_value_key(trace_id: str, prefix_len: int, policy: str) -> str:
    return content_key("step_value", trace_id, prefix_len, policy)


# --------------------------------------------------------------------- pairs

PAIR_SCHEMA = {
    "pair_id": pl.String,
    "kind": pl.String,
    "problem_id": pl.String,
    "prompt": pl.String,
    "chosen": pl.String,
    "rejected": pl.String,
    "chosen_trace_id": pl.String,
    "rejected_trace_id": pl.String,
    "meta": pl.String,
}


def pair_key(kind: str, *parts: Any) -> str:
    """``parts``: what makes the pair itself (its traces, the step it cuts at, ...)."""
    return content_key("pair", kind, *parts)


def pair_row(
    kind: str,
    problem_id: str,
    prompt: str,
    chosen: str | None,
    rejected: str | None,
    chosen_id: str | None,
    rejected_id: str,
    meta: dict,
    *key: Any,
) -> dict[str, Any]:
    return {
        "pair_id": pair_key(kind, *key),
        "kind": kind,
        "problem_id": problem_id,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_trace_id": chosen_id,
        "rejected_trace_id": rejected_id,
        "meta": json.dumps(meta),
    }


# ------------------------------------------------------------- sft selection

SELECTION_SCHEMA = {
    "selection_id": pl.String,
    "recipe": pl.String,
    "trace_id": pl.String,
    "problem_id": pl.String,
    "rank": pl.Int32,
    "fail_rate": pl.Float64,
    "weight": pl.Float64,
}


def selection_key(recipe: str, trace_id: str) -> str:
    return content_key("sft_selection", recipe, trace_id)


# --------------------------------------------------------------------- evals
# pitfall eval's own tables: no curation query reads them.

EVAL_SCHEMA = {
    "eval_id": pl.String,
    "model": pl.String,
    "model_hash": pl.String,
    "lineage": pl.String,
    "params_id": pl.String,
    "params": pl.String,
}
EVAL_PROBLEM_SCHEMA = {
    "eval_problem_id": pl.String,
    "problem_set": pl.String,
    "problem_id": pl.String,
    "problem": pl.String,
    "answer": pl.String,
    "level": pl.String,
}
EVAL_SAMPLE_SCHEMA = {
    "sample_id": pl.String,
    "eval_id": pl.String,
    "problem_id": pl.String,
    "sample_index": pl.Int32,
    "completion": pl.String,
    "finish_reason": pl.String,
    "completion_tokens": pl.Int32,
    "verifier": pl.String,
    "status": pl.String,
    "extracted": pl.String,
}


def eval_key(model_hash: str, params: dict) -> str:
    """An evaluation set-up: the model as its files were, and how it was sampled."""
    return content_key("eval", model_hash, params)


def eval_row(model: str, model_hash: str, lineage: dict | None, params: dict) -> dict[str, Any]:
    return {
        "eval_id": eval_key(model_hash, params),
        "model": model,
        "model_hash": model_hash,
        "lineage": json.dumps(lineage) if lineage is not None else None,
        "params_id": params_key(params),
        "params": json.dumps(params),
    }


def eval_problem_key(problem_set: str, problem_id: str) -> str:
    return content_key("eval_problem", problem_set, problem_id)


def eval_sample_key(eval_id: str, problem_id: str, sample_index: int) -> str:
    return content_key("eval_sample", eval_id, problem_id, sample_index)


# the tables above, by name
SCHEMAS = {
    "problems": PROBLEM_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "traces": TRACE_SCHEMA,
    "verdicts": VERDICT_SCHEMA,
    "first_errors": FIRST_ERROR_SCHEMA,
    "failed_requests": FAILED_REQUEST_SCHEMA,
    "steps": STEP_SCHEMA,
    "rollouts": ROLLOUT_SCHEMA,
    "step_values": STEP_VALUE_SCHEMA,
    "pairs": PAIR_SCHEMA,
    "sft_selection": SELECTION_SCHEMA,
    "evals": EVAL_SCHEMA,
    "eval_problems": EVAL_PROBLEM_SCHEMA,
    "eval_samples": EVAL_SAMPLE_SCHEMA,
}
