"""Evaluation (`pitfall eval`): a model's samples on a problem set, verified.

Not a curation stage: its problems and samples go to ``eval_problems`` and
``eval_samples``, which no curation query reads, so an evaluation never
becomes training data. Like every stage it is incremental: an evaluation is
keyed by the model's files and the sampling parameters, each sample by its
index, and a problem is asked only for the samples it does not have yet (with
the seed its first missing index gives, as sampling does).

The model is ``ctx.scope.model``; the problem set is ``ctx.scope.inputs`` (a
file) or ``ctx.scope.sources`` (a source already in the store).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl

from pipeline.evaluation import identify, pass_at_k_table
from pipeline.ingest import column_map, to_problems
from pipeline.readers import chunked, read_file
from pipeline.rows import (
    EVAL_PROBLEM_SCHEMA,
    EVAL_SAMPLE_SCHEMA,
    EVAL_SCHEMA,
    eval_problem_key,
    eval_row,
    eval_sample_key,
)
from pipeline.sampling import Failed, GenerationFailed, Request, SamplingParams, request_seed
from pipeline.stages.base import Source, StageContext, StageResult
from pipeline.stages.ingest import PROBLEM_ROUND, limits, source_name
from pipeline.verify import VERIFIER, Answer, judge


class EvalError(ValueError):
    """An evaluation that cannot start: no model, or a problem set that is not there."""


def sampling_params(ctx: StageContext) -> SamplingParams:
    e = ctx.settings.eval
    return SamplingParams(e.temperature, e.top_p, e.max_tokens, e.seed, e.template)


def run(ctx: StageContext) -> StageResult:
    if not ctx.scope.model:
        raise EvalError("no model to evaluate")
    result = StageResult("eval")
    sets = _load_problem_sets(ctx, result)
    model = identify(ctx.scope.model)
    params = sampling_params(ctx)
    setup = eval_row(model.name, model.fingerprint, model.lineage, params.as_dict())
    ctx.store.insert_new("evals", pl.DataFrame([setup], schema=EVAL_SCHEMA))
    todo = ctx.store.stage("eval_todo", {"eval_id": setup["eval_id"], "sets": sets})
    n = ctx.settings.eval.n
    todo = todo.with_columns(need=(n - pl.col("have")).clip(lower_bound=0)).filter(
        pl.col("need") > 0
    )
    result.rows_in = todo.height
    if todo.height:
        _sample(ctx, setup["eval_id"], params, todo, result)
    counts = ctx.store.stage("eval_counts", {"sets": sets}).filter(
        pl.col("eval_id") == setup["eval_id"]
    )
    result.detail.update(
        eval_id=setup["eval_id"],
        model=model.name,
        problem_sets=sets,
        pass_at_k=pass_at_k_table(counts, ctx.settings.eval.k).to_dicts(),
    )
    return result


def compare(store, sets: list[str], ks: list[int]) -> pl.DataFrame:
    """pass@k of every evaluation that sampled these problem sets (`pitfall eval --compare`)."""
    return pass_at_k_table(store.stage("eval_counts", {"sets": sets}), ks)


def _load_problem_sets(ctx: StageContext, result: StageResult) -> list[str]:
    """Write the evaluation's problems to ``eval_problems``; their set names."""
    level = ctx.settings.eval.level_column
    sets = []
    sources = ctx.scope.inputs
    if not sources and not ctx.scope.sources:
        path = Path(ctx.settings.eval.problems)
        if not path.is_file():
            raise EvalError(f"no problem file {path} ([eval] problems)")
        columns = column_map(ctx.settings.run.preset)
        sources = (Source(source_name(path), lambda: read_file(path), columns),)
    quarantined: Counter[str] = Counter()
    for source in sources:
        for chunk in chunked(source.open(), PROBLEM_ROUND):
            problems, quarantine = to_problems(chunk, source.name, source.columns, limits(ctx))
            if quarantine.height:
                ctx.store.insert_new("quarantine", quarantine)
                quarantined.update(quarantine["reason"])
            ctx.store.insert_new("eval_problems", _eval_problems(problems, source.name, level))
        sets.append(source.name)
    for name in ctx.scope.sources:
        found = ctx.store.stage(
            "eval_problems_from_source", {"source": name, "level_path": f"$.{level}"}
        )
        if found.height == 0:
            raise EvalError(
                f"{name}: no such problem file, and no source of that name with gold"
                " answers in the store"
            )
        frame = found.with_columns(problem_set=pl.lit(name))
        ctx.store.insert_new("eval_problems", _keyed(frame))
        sets.append(name)
    result.skipped.update({f"quarantined: {r}": k for r, k in quarantined.items()})
    return sets


def _eval_problems(problems: pl.DataFrame, problem_set: str, level_column: str) -> pl.DataFrame:
    problems = problems.filter(pl.col("answer").is_not_null())
    levels = (
        [_level(meta, level_column) for meta in problems["meta"].to_list()]
        if problems.height
        else []
    )
    frame = problems.select("problem_id", "problem", "answer").with_columns(
        problem_set=pl.lit(problem_set), level=pl.Series(levels, dtype=pl.String)
    )
    return _keyed(frame)


def _level(meta: str | None, column: str) -> str | None:
    value = json.loads(meta).get(column) if meta else None
    return None if value is None else str(value)


def _keyed(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [
        eval_problem_key(s, p) for s, p in frame.select("problem_set", "problem_id").iter_rows()
    ]
    return frame.with_columns(eval_problem_id=pl.Series(keys, dtype=pl.String)).select(
        list(EVAL_PROBLEM_SCHEMA)
    )


def _sample(
    ctx: StageContext, eval_id: str, params: SamplingParams, todo: pl.DataFrame, result: StageResult
) -> None:
    backend = ctx.backend(model=ctx.scope.model)
    advance = ctx.bar("evaluating", int(todo["need"].sum()))
    rows = list(todo.iter_rows(named=True))
    step = ctx.settings.teacher.commit_every
    statuses: Counter[str] = Counter()
    for offset in range(0, len(rows), step):
        chunk = rows[offset : offset + step]
        requests = [
            Request(
                backend.render(r["problem"], params.template),
                r["need"],
                request_seed(params.seed, r["problem_id"], r["have"]),
            )
            for r in chunk
        ]
        stop = None
        try:
            results: list = backend.generate(requests, params)
        except GenerationFailed as exc:
            results, stop = exc.results, exc
        samples, answers = [], []
        for r, completions in zip(chunk, results, strict=True):
            if completions is None or isinstance(completions, Failed):
                reason = completions.reason if completions is not None else "not finished"
                result.skipped[f"failed request: {reason}"] += 1
                continue
            for j, c in enumerate(completions):
                index = r["have"] + j
                samples.append((eval_sample_key(eval_id, r["problem_id"], index), r, index, c))
                answers.append(Answer(c.text, c.finish_reason, r["answer"]))
                result.tokens += c.completion_tokens or 0
        judged = judge(answers, ctx.pool(), ctx.settings.verify.fallback) if answers else []
        frame = pl.DataFrame(
            [
                {
                    "sample_id": key,
                    "eval_id": eval_id,
                    "problem_id": r["problem_id"],
                    "sample_index": index,
                    "completion": c.text,
                    "finish_reason": c.finish_reason,
                    "completion_tokens": c.completion_tokens,
                    "verifier": VERIFIER,
                    "status": j.status,
                    "extracted": j.extracted,
                }
                for (key, r, index, c), j in zip(samples, judged, strict=True)
            ],
            schema=EVAL_SAMPLE_SCHEMA,
        )
        if frame.height:
            result.rows_out += ctx.store.insert_new("eval_samples", frame).inserted
        statuses.update(frame["status"].to_list())
        if advance:
            advance(frame.height)
        if stop is not None:
            raise stop  # what finished is stored; the next run asks for the rest
    result.detail["verdicts"] = dict(statuses)
