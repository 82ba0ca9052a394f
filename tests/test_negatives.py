"""Pairs from a small hand-built store, checked against hand-computed expectations,
then loaded by TRL's DPOTrainer and SFTTrainer (one real optimisation step each)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import load_settings
from pipeline.keys import content_key
from pipeline.rows import first_error_key, rollout_key
from pipeline.stages import StageContext
from pipeline.stages import export as export_stage
from pipeline.stages import negatives as negatives_stage
from pipeline.stages import reweight as reweight_stage
from pipeline.stages import segment as segment_stage
from pipeline.store import Store
from pipeline.verify import VERIFIER
from tests.conftest import STUDENT

PROMPT = "<s><|user|>Start with 2. Add 3. Multiply by 2. What is the result?\n<|assistant|>"
GOOD = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nThe answer is \\boxed{10}."
BAD_LATE = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 12.\n\nThe answer is \\boxed{12}."
BAD_EARLY = "Add 3: 2 + 3 = 6.\n\nMultiply by 2: 6 * 2 = 12.\n\nThe answer is \\boxed{12}."
GOOD_2 = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nSo we get \\boxed{10}."
POLICY = "policy-1"


def build_negatives(store, settings, kinds) -> dict:
    """The negatives stage for ``kinds``: pairs built and skipped, per kind."""
    settings.negatives.kinds = kinds
    return negatives_stage.run(StageContext(store, settings)).detail


def reweight(store, settings) -> pl.DataFrame:
    reweight_stage.run(StageContext(store, settings))
    return store.query("SELECT * FROM sft_selection")


def trace(tid, problem, index, text):
    return {
        "trace_id": tid,
        "problem_id": problem,
        "model": "m",
        "params_id": "p",
        "sample_index": index,
        "prompt": PROMPT,
        "completion": text,
        "finish_reason": "stop",
    }


@pytest.fixture
def curated(tmp_path):
    settings = load_settings(None, {"store": {"path": tmp_path / "s.duckdb"}})
    with Store.writer(settings.store.path, command="curate") as store:
        store.insert_new(
            "problems",
            pl.DataFrame(
                [
                    {"problem_id": "P1", "problem": "p1", "answer": "10", "source": "t"},
                    {"problem_id": "P2", "problem": "p2", "answer": "10", "source": "t"},
                ]
            ),
        )
        traces = [
            trace("T1", "P1", 0, BAD_LATE),  # first error: step 1
            trace("T2", "P1", 1, GOOD),
            trace("T3", "P1", 2, BAD_EARLY),  # first error: step 0
            trace("T4", "P1", 3, GOOD_2),
            trace("T5", "P2", 0, GOOD),  # P2 has no wrong trace
        ]
        store.insert_new("traces", pl.DataFrame(traces))
        status = {"T1": "wrong", "T2": "correct", "T3": "wrong", "T4": "correct", "T5": "correct"}
        store.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": t, "trace_id": t, "verifier": VERIFIER, "status": s}
                    for t, s in status.items()
                ]
            ),
        )
        segment_stage.run(StageContext(store, settings))
        store.insert_new(
            "first_errors",
            pl.DataFrame(
                [
                    {"first_error_id": first_error_key(t, "mc-binary"), "trace_id": t}
                    | {"method": "mc-binary", "first_error": e}
                    for t, e in [("T1", 1), ("T3", 0), ("T2", -1), ("T4", -1)]
                ]
            ),
        )
        # rollouts from T1's prefix 1: index 0 failed, index 2 reached 10
        store.insert_new(
            "rollouts",
            pl.DataFrame(
                [
                    {
                        "rollout_id": rollout_key("T1", 1, POLICY, i),
                        "trace_id": "T1",
                        "prefix_len": 1,
                        "policy": POLICY,
                        "rollout_index": i,
                        "completion": text,
                        "correct": ok,
                    }
                    for i, text, ok in [
                        (0, "Multiply by 2: 5 * 2 = 11.\n\nThe answer is \\boxed{11}.", False),
                        (2, "Multiply by 2: 5 * 2 = 10 (twice five).\n\nSo \\boxed{10}.", True),
                    ]
                ]
            ),
        )
        # T1's values: V0 = 1, V1 = 0.5, V2 = 0 (V3 = 0: its answer is wrong)
        store.insert_new(
            "step_values",
            pl.DataFrame(
                [
                    {
                        "value_id": content_key("v", p),
                        "trace_id": "T1",
                        "prefix_len": p,
                        "policy": POLICY,
                        "k": 8,
                        "n_correct": n,
                        "value": n / 8,
                    }
                    for p, n in [(0, 8), (1, 4), (2, 0)]
                ]
            ),
        )
    return settings


def pairs_of(settings, kind):
    with Store.reader(settings.store.path) as store:
        return store.query(
            "SELECT * FROM pairs WHERE kind = ? ORDER BY rejected_trace_id", [kind]
        ).to_dicts()


def test_outcome_pairs_follow_redis_recipe(curated):
    with Store.writer(curated.store.path, command="neg") as store:
        summary = build_negatives(store, curated, ["outcome"])
    assert summary["built"] == {"outcome": 1}
    assert summary["skipped"]["outcome"] == {"no incorrect trace": 1}  # P2
    (pair,) = pairs_of(curated, "outcome")
    # first correct (T2, sample 1) against first incorrect (T1, sample 0)
    assert (pair["chosen_trace_id"], pair["rejected_trace_id"]) == ("T2", "T1")
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (PROMPT, GOOD, BAD_LATE)
    # up to m pairs: the i-th correct with the i-th incorrect; reruns add nothing
    curated.negatives.pairs_per_problem = 2
    with Store.writer(curated.store.path, command="neg") as store:
        assert build_negatives(store, curated, ["outcome"])["built"] == {"outcome": 1}
        assert build_negatives(store, curated, ["outcome"])["built"] == {"outcome": 0}
    got = [(p["chosen_trace_id"], p["rejected_trace_id"]) for p in pairs_of(curated, "outcome")]
    assert got == [("T2", "T1"), ("T4", "T3")]


def test_step_pairs_cut_before_the_first_error(curated):
    with Store.writer(curated.store.path, command="neg") as store:
        summary = build_negatives(store, curated, ["step"])
    assert summary["built"] == {"step": 2}
    t1, t3 = pairs_of(curated, "step")
    # T1 goes wrong at step 1: the prompt carries step 0, the chosen step is the
    # first step of the rollout from that prefix that reached the gold answer
    assert t1["prompt"] == PROMPT + "Add 3: 2 + 3 = 5.\n\n"
    assert t1["rejected"] == "Multiply by 2: 5 * 2 = 12."
    assert t1["chosen"] == "Multiply by 2: 5 * 2 = 10 (twice five)."
    assert json.loads(t1["meta"])["rollout"] == 2
    # T3 goes wrong at step 0 and has no rollout: a correct trace (T2) shares the
    # empty prefix, so its step 0 is the chosen one
    assert t3["prompt"] == PROMPT
    assert (t3["rejected"], t3["chosen"]) == ("Add 3: 2 + 3 = 6.", "Add 3: 2 + 3 = 5.")
    assert t3["chosen_trace_id"] == "T2"


def test_step_pair_skipped_without_a_correct_continuation(curated):
    with Store.writer(curated.store.path, command="drop") as store:
        store.execute("DELETE FROM traces WHERE trace_id IN ('T2', 'T4')")
        store.execute("DELETE FROM rollouts")
        summary = build_negatives(store, curated, ["step"])
    assert summary["built"] == {"step": 0}
    assert summary["skipped"]["step"] == {"no correct continuation": 2}


def test_first_pit_and_stepwise_from_values(curated):
    with Store.writer(curated.store.path, command="neg") as store:
        summary = build_negatives(store, curated, ["first-pit", "stepwise"])
    # T3 has no values: counted, not guessed
    assert summary["skipped"]["first-pit"] == {"no step values (run mc-linear)": 1}
    (pit,) = pairs_of(curated, "first-pit")
    # values after each step: V1 = .5, V2 = 0, V3 = 0 -> first minimum after step 1
    assert json.loads(pit["meta"])["pit"] == 1
    assert pit["rejected"] == "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 12."
    assert (pit["chosen_trace_id"], pit["chosen"]) == ("T2", GOOD)
    (row,) = pairs_of(curated, "stepwise")
    meta = json.loads(row["meta"])
    assert meta["completions"] == [
        "Add 3: 2 + 3 = 5.",
        "Multiply by 2: 5 * 2 = 12.",
        "The answer is \\boxed{12}.",
    ]
    # best of 5 from 8 rollouts: 8/8 -> 1, 4/8 -> 1 - C(4,5)/C(8,5) = 1, 0/8 -> 0
    assert meta["values"] == [1.0, 1.0, 0.0, 0.0] and meta["value"] == "best of 5"
    assert meta["mean_values"] == [1.0, 0.5, 0.0, 0.0]
    assert meta["advantages"] == [0.0, -1.0, 0.0]  # from the best-of-K values
    assert meta["labels"] == [True, False, False] and meta["labels_from"] == "first error"


def test_reweight_selects_by_target_and_weights_by_fail_rate(curated):
    curated.dart.k_p = 4
    curated.reweight.select, curated.reweight.weight = "prop2diff", "fail_rate"
    with Store.writer(curated.store.path, command="rw") as store:
        sel = reweight(store, curated).sort("trace_id")
        # recomputing the recipe replaces it, it does not pile up
        reweight(store, curated)
        n = store.query("SELECT count(*) AS n FROM sft_selection")["n"][0]
    # P1 fails 2 of 4 (f = .5, the worst): target 4, both corrects kept;
    # P2 never fails: target max(1, 0) = 1
    assert sel["trace_id"].to_list() == ["T2", "T4", "T5"] and n == 3
    w = dict(zip(sel["trace_id"], sel["weight"], strict=True))
    assert w["T2"] == w["T4"] > w["T5"]
    assert sum(w.values()) / 3 == pytest.approx(1.0)
    assert w["T2"] / w["T5"] == pytest.approx((0.5 + 0.1) / 0.1)


def source(tid, text, correct, first_error=None, index=0):
    """A row of negative_sources: the trace's steps are its paragraphs."""
    from pipeline.segment import segment

    steps = segment(text, "blank", 0, None)
    return {
        "trace_id": tid,
        "problem_id": "P",
        "prompt": PROMPT,
        "completion": text,
        "sample_index": index,
        "correct": correct,
        "starts": [s.start for s in steps],
        "ends": [s.end for s in steps],
        "step_texts": [text[s.start : s.end] for s in steps],
        "first_error": first_error,
        "localized": True,
    }


def values_of(best):
    from pipeline.negatives import PrefixValues

    return PrefixValues(best=best, mean=best, alive=[None if v is None else v > 0 for v in best])


def test_no_pair_of_any_kind_has_chosen_equal_to_rejected():
    from pipeline.negatives import first_pit_pairs, outcome_pairs

    # a timeout is not correct, so it can be the rejected side of its own text
    same = pl.DataFrame([source("C", GOOD, True), source("W", GOOD, False, index=1)])
    built = outcome_pairs(same)
    assert built.rows == [] and built.skipped == {"chosen equals rejected": 1}
    # a wrong trace that is the correct solution plus a wrong afterthought: cut at its
    # pit (after step 2, the correct answer) it is the correct solution itself
    wrong = GOOD + "\n\nWait, it is 12. \\boxed{12}."
    rows = pl.DataFrame([source("C", GOOD, True), source("W", wrong, False, index=1)])
    built = first_pit_pairs(rows, {"W": values_of([1.0, 1.0, 0.5, 0.0, 0.0])})
    assert built.rows == [] and built.skipped == {"chosen equals rejected": 1}
    different = first_pit_pairs(rows, {"W": values_of([1.0, 0.5, 0.0, 0.5, 0.0])})
    assert len(different.rows) == 1 and not different.skipped


def test_reweight_keeps_sampling_setups_apart_and_counts_a_timeout_as_a_failure(curated):
    # P2 again under other sampling parameters: a timeout, then a correct answer
    with Store.writer(curated.store.path, command="more") as store:
        store.insert_new(
            "traces",
            pl.DataFrame(
                [
                    trace("Q0", "P2", 0, GOOD) | {"params_id": "q"},
                    trace("Q1", "P2", 1, GOOD_2) | {"params_id": "q"},
                ]
            ),
        )
        store.insert_new(
            "verdicts",
            pl.DataFrame(
                [
                    {"verdict_id": "VQ0", "trace_id": "Q0", "verifier": VERIFIER}
                    | {"status": "timeout"},
                    {"verdict_id": "VQ1", "trace_id": "Q1", "verifier": VERIFIER}
                    | {"status": "correct"},
                ]
            ),
        )
    curated.dart.k_p = 4
    curated.reweight.select = "prop2diff"
    with Store.writer(curated.store.path, command="rw") as store:
        sel = reweight(store, curated).sort("trace_id")
    # setup p: as before (P1 f = .5 the worst, P2 f = 0: one trace). Setup q: P2 alone,
    # f = .5 with the timeout a failure, so it is that setup's hardest: target 4.
    # Pooled, P2 would keep one of T5/Q1, with the timeout left out: f = 0.
    assert sel["trace_id"].to_list() == ["Q1", "T2", "T4", "T5"]
    assert dict(zip(sel["trace_id"], sel["fail_rate"], strict=True))["Q1"] == 0.5
    curated.reweight.per = "teacher"
    with Store.writer(curated.store.path, command="rw") as store:
        pooled = reweight(store, curated)
    # per teacher the two setups pool: P2 fails 1 of 3 (the timeout)
    assert pooled.filter(pl.col("problem_id") == "P2")["fail_rate"].to_list() == pytest.approx(
        [1 / 3, 1 / 3]
    )


@pytest.mark.slow  # trains two models
def test_pairs_load_in_trl_trainers(curated, tmp_path):
    """The rows feed TRL as they are: DPO takes prompt/chosen/rejected, SFT
    prompt/completion. One training step each on the toy student."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    with Store.writer(curated.store.path, command="neg") as store:
        build_negatives(store, curated, ["outcome", "step", "first-pit"])
        pairs = store.query("SELECT prompt, chosen, rejected FROM pairs ORDER BY pair_id")
        sft = store.query(
            "SELECT t.prompt, t.completion FROM traces t JOIN verdicts v USING (trace_id) "
            "WHERE v.status = 'correct' ORDER BY t.trace_id"
        )
    assert pairs.height == 4
    tok = AutoTokenizer.from_pretrained(STUDENT)
    common = dict(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
        report_to=[], save_strategy="no", use_cpu=True, logging_steps=1,
    )  # fmt: skip
    dpo = DPOTrainer(
        model=str(STUDENT),
        args=DPOConfig(**common),
        train_dataset=Dataset.from_polars(pairs),
        processing_class=tok,
    )
    dpo_loss = dpo.train().training_loss
    sft_trainer = SFTTrainer(
        model=str(STUDENT),
        args=SFTConfig(**common),
        train_dataset=Dataset.from_polars(sft),
        processing_class=tok,
    )
    sft_loss = sft_trainer.train().training_loss
    assert dpo_loss == pytest.approx(0.6931, abs=0.05)  # log 2: policy = reference at step 1
    assert 0 < sft_loss < 20


def test_export_loads_with_datasets_and_pushes(curated, tmp_path):
    """The export folder is a Hub dataset; the Hub itself cannot be reached here,
    so push goes to a stand-in API object that records the calls."""
    from datasets import load_dataset

    curated.export.dir = tmp_path / "export"
    curated.export.hub_repo = "org/toy-pitfall"
    with Store.writer(curated.store.path, command="neg") as store:
        build_negatives(store, curated, ["outcome", "step", "first-pit", "stepwise"])
        reweight(store, curated)
        written = export_stage.run(StageContext(store, curated)).detail["configs"]
    assert written == {"sft": 3, "outcome": 1, "step": 2, "first_pit": 1, "stepwise": 1}
    sft = load_dataset(str(curated.export.dir), "sft", split="train")
    assert sft.column_names[:3] == ["prompt", "completion", "weight"]
    step = load_dataset(str(curated.export.dir), "step", split="train")
    assert sorted(step["rejected"]) == ["Add 3: 2 + 3 = 6.", "Multiply by 2: 5 * 2 = 12."]
    stepwise = load_dataset(str(curated.export.dir), "stepwise", split="train")
    assert stepwise[0]["labels"] == [True, False, False]
    card = (curated.export.dir / "README.md").read_text()
    for config in written:  # each file's fingerprint, as a reader can check it
        path = curated.export.dir / config / "train-00000-of-00001.parquet"
        assert hashlib.sha256(path.read_bytes()).hexdigest() in card, config
    with Store.reader(curated.store.path) as store:
        run_ids = store.query("SELECT run_id FROM runs WHERE command <> 'neg'")["run_id"]
    for fact in (
        "| `m` | `not recorded` | sampled | 5 | 0 |",  # the traces' model, params, count, tokens
        f"verifier: {VERIFIER}",
        "first errors (step, first_pit, stepwise): mc-binary, 2 found",
        "DART sampling: strategy = uniform, n_max = 64, round_size = 8, k_u = 4",
        "SFT selection: all/none",
        "pitfall version: 0.1.0",
        "`pitfall train step-dpo --data DIR --model SFT_CHECKPOINT`",
        *(f"| `{r}` | curate | " for r in run_ids),  # the run that wrote the rows
    ):
        assert fact in card, fact

    class FakeHub:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo, **kw):
            self.calls.append(("create", repo, kw["repo_type"]))

        def upload_folder(self, **kw):
            self.calls.append(("upload", kw["repo_id"], kw["folder_path"]))
            return "https://huggingface.co/datasets/org/toy-pitfall/commit/1"

    hub = FakeHub()
    assert export_stage.push_to_hub(curated, api=hub).endswith("/commit/1")
    assert hub.calls == [
        ("create", "org/toy-pitfall", "dataset"),
        ("upload", "org/toy-pitfall", str(curated.export.dir)),
    ]


def test_an_export_whose_sft_recipe_was_never_computed_says_so(curated, tmp_path):
    curated.export.dir = tmp_path / "export"
    with Store.writer(curated.store.path, command="neg") as store:
        reweight(store, curated)  # the default recipe, all/none
        curated.reweight.select = "first"  # what `reweight --select first` alone leaves unset
        result = export_stage.run(StageContext(store, curated))
    assert "sft" not in result.detail["configs"]
    assert list(result.skipped) == [
        "no sft rows for recipe first/none: pitfall reweight computes it from [reweight]"
    ]


def test_push_reads_the_token_from_the_environment_only(curated, tmp_path, monkeypatch, caplog):
    """`pitfall export --push`: the Hub's network endpoint cannot be reached here, so
    huggingface_hub.HfApi is replaced by a stand-in that records what it was given.
    The token reaches it, and nothing else: not the card, the files, the store or the logs."""
    import huggingface_hub

    from tests.conftest import Pitfall

    secret = "hf_pitfallTestToken0123456789"
    seen = {}

    class FakeHub:
        def __init__(self, token=None):
            seen["token"] = token

        def create_repo(self, repo, **kw):
            seen["repo"] = repo

        def upload_folder(self, **kw):
            seen["files"] = sorted(p.name for p in Path(kw["folder_path"]).rglob("*"))
            return "https://huggingface.co/datasets/org/toy/commit/1"

    with Store.writer(curated.store.path, command="neg") as store:
        build_negatives(store, curated, ["outcome", "step"])
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("PITFALL_EXPORT__HUB_REPO", "org/toy")
    out_dir = tmp_path / "export"
    result = Pitfall(curated.store.path)("export", "--dir", out_dir, "--push")
    assert seen["token"] == secret and seen["repo"] == "org/toy" and "README.md" in seen["files"]
    assert "pushed: https://huggingface.co/datasets/org/toy/commit/1" in result.output
    assert secret not in result.output and secret not in caplog.text
    for path in [*out_dir.rglob("*"), curated.store.path]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow  # loads TRL and the toy student in each case
@pytest.mark.parametrize(
    ("config", "trainer"),
    [("sft", "sft"), ("outcome", "dpo"), ("step", "dpo"), ("first_pit", "dpo")],
)
def test_each_exported_config_passes_its_trl_trainers_dataset_preparation(
    curated, tmp_path, config, trainer
):
    """What the card says trains on a config does take it: the TRL trainer
    tokenizes every row of it on the toy student (no step is taken)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    curated.export.dir = tmp_path / "export"
    with Store.writer(curated.store.path, command="neg") as store:
        build_negatives(store, curated, ["outcome", "step", "first-pit"])
        reweight(store, curated)
        export_stage.run(StageContext(store, curated))
    rows = load_dataset(str(curated.export.dir), config, split="train")
    common = dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    tok = AutoTokenizer.from_pretrained(STUDENT)
    if trainer == "sft":
        t = SFTTrainer(model=str(STUDENT), args=SFTConfig(**common), train_dataset=rows,
                       processing_class=tok)  # fmt: skip
    else:
        t = DPOTrainer(model=str(STUDENT), args=DPOConfig(**common), train_dataset=rows,
                       processing_class=tok)  # fmt: skip
    prepared = t.train_dataset
    assert prepared.num_rows == rows.num_rows > 0
    ids = "input_ids" if trainer == "sft" else "prompt_ids"
    assert ids in prepared.column_names and all(len(x) > 0 for x in prepared[ids])


def test_a_probed_full_trace_keeps_its_value_instead_of_zero():
    from pipeline.negatives import prefix_values

    values = pl.DataFrame(
        {
            "trace_id": ["W", "W", "T", "T", "T"],
            "policy": ["p"] * 5,
            "prefix_len": [1, 2, 1, 2, 3],
            "value": [1.0, 0.5, 1.0, 1.0, 0.75],
        }
    )
    values = values.with_columns(k=pl.lit(4), n_correct=(pl.col("value") * 4).cast(pl.Int64))
    got = prefix_values(values, {"W": 3, "T": 3})
    assert got["W"].mean == [None, 1.0, 0.5, 0.0]  # wrong: its own end is dead
    assert got["T"].mean == [None, 1.0, 1.0, 0.75]  # truncated, admitted: its end was probed


def test_step_pair_sides_are_cut_by_the_same_rule_on_a_long_trace():
    """320 paragraphs in 32 steps: the rejected step is ~10 paragraphs, and so must
    the chosen step be (it was the rollout's first paragraph alone)."""
    from pipeline.negatives import step_pairs
    from pipeline.segment import count_tokens, segment

    para = [f"Line {i}: we add {i} and keep the running total." for i in range(320)]
    wrong = "\n\n".join(para)
    steps = segment(wrong, "blank", 10, 32)
    assert len(steps) == 32
    row = source("W", wrong, False, first_error=5) | {
        "starts": [s.start for s in steps],
        "ends": [s.end for s in steps],
        "step_texts": [wrong[s.start : s.end] for s in steps],
    }
    rejected = row["step_texts"][5]
    continuation = "\n\n".join(
        f"Instead, line {i}: we add {i} twice, carefully." for i in range(60)
    )
    rollouts = pl.DataFrame(
        [{"trace_id": "W", "prefix_len": 5, "policy": "p", "rollout_index": 0}]
    ).with_columns(completion=pl.lit(continuation))
    built = step_pairs(pl.DataFrame([row]), rollouts, "blank", 10, 32)
    chosen = built.rows[0]["chosen"]
    assert chosen.count("\n\n") + 1 == rejected.count("\n\n") + 1 == 10
    assert abs(count_tokens(chosen) - count_tokens(rejected)) <= count_tokens(para[0])
    # a short trace (no budget): both sides are one paragraph
    short = step_pairs(
        pl.DataFrame([source("S", BAD_LATE, False, first_error=1)]),
        rollouts.with_columns(trace_id=pl.lit("S"), prefix_len=pl.lit(1)),
        "blank",
        10,
        32,
    )
    assert short.rows[0]["chosen"] == "Instead, line 0: we add 0 twice, carefully."


def test_stepwise_values_are_best_of_k_and_labels_agree_with_the_first_error():
    from pipeline.negatives import best_of, prefix_values, stepwise_rows

    assert best_of(8, 1, 5) == pytest.approx(1 - 21 / 56)  # 1 - C(7,5)/C(8,5)
    assert best_of(8, 4, 5) == 1.0 and best_of(8, 0, 5) == 0.0
    assert best_of(2, 1, 5) == pytest.approx(1 - 0.5**5)  # fewer rollouts than K: plug-in
    # four steps; prefix 1 alive (5/8), prefix 2 barely (1/8, under a threshold of 2),
    # prefix 3 alive again (6/8): the values are not monotone
    counts = {1: 5, 2: 1, 3: 6}
    values = pl.DataFrame(
        [
            {"trace_id": t, "policy": "p", "prefix_len": p, "k": 8, "n_correct": c}
            for t in ("L", "U")
            for p, c in counts.items()
        ]
    )
    v = prefix_values(values, {"L": 4, "U": 4}, K=5, threshold=2)
    text = "One: 1.\n\nTwo: 2.\n\nThree: 3.\n\nSo \\boxed{4}."
    rows = pl.DataFrame(
        [source("L", text, False, first_error=1), source("U", text, False) | {"localized": False}]
    )
    built = stepwise_rows(rows, v, K=5)
    meta = {r["rejected_trace_id"]: json.loads(r["meta"]) for r in built.rows}
    # the localized trace: True before its first error, False from it on
    assert meta["L"]["labels"] == [True, False, False, False]
    # without a label: mc-linear's from the values, with the alive threshold
    # (1 of 8 is dead at threshold 2; the old rule `value > 0` called it alive)
    assert meta["U"]["labels"] == [True, False, False, False]
    assert meta["U"]["labels_from"] == "values"
    assert meta["L"]["values"][1:] == pytest.approx([1.0, 1 - 21 / 56, 1.0, 0.0])


def test_an_identical_rejected_side_does_not_use_up_the_problems_pair():
    from pipeline.negatives import outcome_pairs

    rows = pl.DataFrame(
        [
            source("C", GOOD, True),
            source("S", GOOD, False, index=1),  # a timeout with the correct text
            source("W", BAD_LATE, False, index=2),
        ]
    )
    built = outcome_pairs(rows, per_problem=1)
    assert [(r["chosen_trace_id"], r["rejected_trace_id"]) for r in built.rows] == [("C", "W")]
    assert built.skipped == {"chosen equals rejected": 1}


def test_first_pit_and_stepwise_respect_a_trace_without_a_wrong_step():
    from pipeline.negatives import first_pit_pairs, stepwise_rows

    text = "One: 1.\n\nTwo: 2.\n\nThree: 3."
    alive = values_of([None, 1.0, 1.0, 1.0])  # a truncated trace admitted: alive to its end
    rows = pl.DataFrame([source("C", GOOD, True), source("T", text, False) | {"localized": False}])
    built = first_pit_pairs(rows, {"T": alive})
    assert built.rows == [] and built.skipped == {"no pit: every prefix stays alive": 1}
    labelled = rows.with_columns(
        first_error=pl.when(pl.col("trace_id") == "T").then(-1), localized=pl.lit(True)
    )
    assert first_pit_pairs(labelled, {"T": alive}).skipped == {"no wrong step found": 1}
    (row,) = stepwise_rows(rows, {"T": alive}).rows  # no dead prefix: no wrong step
    assert json.loads(row["meta"])["labels"] == [True, True, True]
    undetermined = rows.with_columns(localized=pl.lit(True))  # labelled, first_error NULL
    assert stepwise_rows(undetermined, {"T": alive}).skipped == {"first error undetermined": 1}
