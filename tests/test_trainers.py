"""`pitfall train` (trainers/): REDI's loss by hand and without a reference model,
DART-weighted SFT against TRL's own loss, every trainer end to end on the export
the reference `pitfall run` wrote, the SFT -> REDI recipe, and two processes
under `accelerate launch`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import TrainSettings
from tests.conftest import STUDENT
from tests.curated_run import env
from tests.test_negatives import build_negatives, curated  # noqa: F401  (a fixture)

# the toy student on the CPU; each test loads it and trains a few steps
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROMPT = "<s><|user|>Start with 2. Add 3. Multiply by 2. What is the result?\n<|assistant|>"
GOOD = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nThe answer is \\boxed{10}."
BAD = "Add 3: 2 + 3 = 6.\n\nMultiply by 2: 6 * 2 = 12.\n\nThe answer is \\boxed{12}."
GOOD_2 = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 10.\n\nSo \\boxed{10}."
BAD_2 = "Add 3: 2 + 3 = 5.\n\nMultiply by 2: 5 * 2 = 15.\n\nSo \\boxed{15}."


def test_redi_loss_by_hand():
    import torch

    from trainers.redi import redi_loss

    # rows: chosen 1, chosen 2, rejected 1, rejected 2; the -9s sit on prompt and
    # padding positions, which the loss must not see; the last 1 of a row is EOS
    logps = torch.tensor(
        [
            [-9.0, -1.0, -2.0, -3.0, -9.0],
            [-9.0, -9.0, -0.5, -1.5, -9.0],
            [-9.0, -4.0, -2.0, -9.0, -9.0],
            [-9.0, -1.0, -1.0, -1.0, -5.0],
        ]
    )
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    loss, chosen, rejected = redi_loss(logps, mask, alpha_chosen=1.0, alpha_rejected=0.8)
    assert chosen.tolist() == [-2.0, -1.0]  # -6/3, -2/2
    assert rejected.tolist() == [-3.0, -2.0]  # -6/2, -8/4
    # pair 1: 2 + 0.8 * -3 = -0.4; pair 2: 1 + 0.8 * -2 = -0.6; mean -0.5
    assert loss.item() == pytest.approx(-0.5)
    loss, _, _ = redi_loss(logps, mask, alpha_chosen=0.5, alpha_rejected=0.0)
    assert loss.item() == pytest.approx((0.5 * 2 + 0.5 * 1) / 2)


def _student():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(STUDENT), AutoTokenizer.from_pretrained(STUDENT)


def _completion_logps(model, batch):
    """Each row's token log-probs from a plain forward: log_softmax of the logits."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)


def test_redi_trainer_loss_on_the_model_one_forward_no_reference(tmp_path):
    import torch
    from datasets import Dataset

    from trainers.redi import REDIConfig, REDITrainer

    model, tok = _student()
    pairs = [
        {"prompt": PROMPT, "chosen": GOOD, "rejected": BAD},
        {"prompt": PROMPT, "chosen": GOOD_2, "rejected": BAD_2},
    ]
    args = REDIConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, report_to=[], use_cpu=True
    )
    trainer = REDITrainer(model, args, Dataset.from_list(pairs), tok)
    assert trainer.args.learning_rate == 1e-6 and trainer.args.num_train_epochs == 1
    assert not any(
        isinstance(v, torch.nn.Module) and v is not model for v in vars(trainer).values()
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    # the completion's length counts its EOS and not the prompt
    lengths = batch["completion_mask"][:, 1:].sum(1).tolist()
    texts = [GOOD, GOOD_2, BAD, BAD_2]
    assert lengths == [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts]
    from torch.nn.modules.module import register_module_forward_hook
    from transformers import GenerationMixin

    calls = []  # every language model's forward, the policy's or any other's

    def seen(module, args, kwargs, output):
        if isinstance(module, GenerationMixin):
            calls.append(kwargs["input_ids"].shape[0])

    hook = register_module_forward_hook(seen, with_kwargs=True)
    model.train()  # as in a training step (REDIConfig disables dropout)
    loss = trainer.compute_loss(model, batch)
    hook.remove()
    assert calls == [4]  # chosen and rejected of both pairs, one forward, nothing else run
    mask = batch["completion_mask"][:, 1:]
    mean = (_completion_logps(model, batch) * mask).sum(1) / mask.sum(1)
    chosen, rejected = mean[:2], mean[2:]
    expected = (-1.0 * chosen + 0.8 * rejected).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    logged = trainer._metrics["train"]
    assert logged["logps/margin"][0] == pytest.approx((chosen - rejected).mean().item(), abs=1e-5)


def _count_models(monkeypatch) -> list:
    from transformers import GenerationMixin, PreTrainedModel

    built = []
    original = PreTrainedModel.__init__

    def counting(self, *args, **kwargs):
        if isinstance(self, GenerationMixin):  # a language model, not its backbone
            built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__init__", counting)
    return built


@pytest.fixture
def pairs_folder(tmp_path) -> Path:
    import polars as pl

    folder = tmp_path / "export"
    (folder / "outcome").mkdir(parents=True)
    rows = [{"prompt": PROMPT, "chosen": GOOD, "rejected": BAD}] * 2
    pl.DataFrame(rows).write_parquet(folder / "outcome" / "train-00000-of-00001.parquet")
    return folder


@pytest.mark.parametrize(("kind", "models"), [("redi", 1), ("dpo", 2)])
def test_redi_builds_no_reference_model_where_dpo_does(
    pairs_folder, tmp_path, monkeypatch, kind, models
):
    from trainers.train import train

    built = _count_models(monkeypatch)
    options = TrainSettings(max_steps=1, batch_size=2)
    train(kind, str(STUDENT), str(pairs_folder), tmp_path / kind, options)
    assert len(built) == models  # REDI: the policy; DPO: the policy and its reference


def test_weighted_sft_is_trls_loss_at_weight_one_and_weights_each_example(tmp_path):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from trainers.weighted_sft import WeightedSFTTrainer

    model, tok = _student()
    rows = [
        {"prompt": PROMPT, "completion": GOOD, "weight": 2.0},
        {"prompt": PROMPT, "completion": GOOD_2, "weight": 0.0},
        {"prompt": PROMPT, "completion": BAD, "weight": 0.5},
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        report_to=[],
        use_cpu=True,
        completion_only_loss=True,
    )
    trainer = WeightedSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    weights = batch.pop("weight")
    assert sorted(weights.tolist()) == [0.0, 0.5, 2.0]
    plain = SFTTrainer.compute_loss(trainer, model, dict(batch))
    ones = trainer.compute_loss(model, dict(batch, weight=torch.ones(3)))
    assert torch.equal(ones, plain)  # exactly TRL's loss
    weighted = trainer.compute_loss(model, dict(batch, weight=weights))
    # by hand: sum_i w_i * (completion token losses of i) / completion tokens of the batch
    completion = batch["labels"][:, 1:] != -100
    per_example = -(_completion_logps(model, batch) * completion).sum(1)
    expected = (weights * per_example).sum() / completion.sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    assert weighted.item() != pytest.approx(plain.item(), rel=1e-3)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _max_change(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture
def first_pit_export(request, tmp_path) -> Path:
    """First-pit pairs need a value at every prefix (mc-linear), which the reference
    run's mc-binary does not give: the pipeline's negatives and export stages on
    test_negatives' hand-built store, whose values are stored."""
    from pipeline.stages import StageContext
    from pipeline.stages import export as export_stage
    from pipeline.store import Store

    settings = request.getfixturevalue("curated")
    settings.export.dir = tmp_path / "pit-export"
    with Store.writer(settings.store.path, command="neg") as store:
        build_negatives(store, settings, ["first-pit"])
        export_stage.run(StageContext(store, settings))
    return settings.export.dir


@pytest.mark.parametrize("kind", ["sft", "dpo", "step-dpo", "first-pit", "redi"])
def test_each_trainer_trains_on_a_pipeline_export_and_saves_a_loadable_model(
    request, tmp_path, kind
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.data import NEEDS
    from trainers.train import LINEAGE_FILE, train

    if kind == "first-pit":
        export = request.getfixturevalue("first_pit_export")
    else:  # the export the reference `pitfall run` wrote
        export = request.getfixturevalue("reference")["folder"] / "export"
    out = tmp_path / kind
    options = TrainSettings(max_steps=2, batch_size=2, logging_steps=1)
    done = train(kind, str(STUDENT), str(export), out, options)
    assert done.steps == 2
    lineage = json.loads((out / LINEAGE_FILE).read_text())
    config = NEEDS[kind][0]
    assert lineage["kind"] == kind and lineage["base_model"] == str(STUDENT)
    assert lineage["data"]["config"] == config and lineage["data"]["rows"] > 0
    assert len(lineage["data"]["fingerprint"]) == 64
    assert lineage["seed"] == 0 and lineage["steps"] == 2 and lineage["seconds"] > 0
    assert lineage["hyperparameters"]["learning_rate"] == (2e-5 if kind == "sft" else 1e-6)
    assert lineage["versions"]["trl"] and lineage["versions"]["transformers"]
    assert isinstance(lineage["loss"]["final"], float)
    assert len(lineage["loss"]["per_epoch"]) >= 1
    # a folder transformers loads and generates from, with changed weights
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok(PROMPT, add_special_tokens=False, return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    assert _max_change(_weights(out), _weights(STUDENT)) > 0


def test_lora_trains_an_adapter_and_saves_it_merged(reference, tmp_path):
    from transformers import AutoModelForCausalLM

    from trainers.train import LINEAGE_FILE, train

    export = reference["folder"] / "export"
    options = TrainSettings(max_steps=2, batch_size=2, lora=True, learning_rate=1e-3)
    done = train("sft", str(STUDENT), str(export), tmp_path / "lora", options)
    assert json.loads((done.out / LINEAGE_FILE).read_text())["options"]["lora"] is True
    merged = _weights(done.out)
    assert not any("lora" in k for k in merged)  # a plain model, the adapter merged in
    assert _max_change(merged, _weights(STUDENT)) > 0
    AutoModelForCausalLM.from_pretrained(done.out)


def test_recipe_redi_starts_stage_two_from_stage_one(reference, tmp_path):
    from trainers.train import LINEAGE_FILE, run_recipe

    export = reference["folder"] / "export"
    options = TrainSettings(max_steps=2, batch_size=2)
    sft, redi = run_recipe("redi", str(STUDENT), str(export), tmp_path, options)
    assert (sft.kind, sft.out, redi.kind, redi.out) == (
        "sft",
        tmp_path / "1-sft",
        "redi",
        tmp_path / "2-redi",
    )
    first = json.loads((sft.out / LINEAGE_FILE).read_text())
    second = json.loads((redi.out / LINEAGE_FILE).read_text())
    assert second["base_model"] == str(sft.out) and second["base_lineage"] == first
    assert first["data"]["config"] == "sft" and second["data"]["config"] == "outcome"
    for record in (first, second):  # logged at the last step though logging_steps is 10
        assert isinstance(record["loss"]["final"], float) and len(record["loss"]["per_epoch"]) == 1
    # stage 2 moved the stage-1 weights a little (lr 1e-6), stage 1 moved the base more (2e-5)
    base, one, two = _weights(STUDENT), _weights(sft.out), _weights(redi.out)
    assert 0 < _max_change(two, one) < _max_change(one, base) / 4
    assert _max_change(two, base) > _max_change(two, one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_accelerate_launch(reference, tmp_path):
    """Data parallel on the CPU (gloo): accelerate's `--cpu` runs one process, so
    the launch is the multi-process one with ACCELERATE_USE_CPU, as on GPUs minus it."""
    out = tmp_path / "ddp"
    export = reference["folder"] / "export"
    accelerate = Path(sys.executable).with_name("accelerate")
    argv = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
        str(_free_port()), "-m", "flows.cli", "train", "redi", "--model", str(STUDENT),
        "--data", str(export), "--out", str(out), "--max-steps", "2", "--batch-size", "1",
    ]  # fmt: skip
    run_env = env() | {"ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(argv, env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    lineage = json.loads((out / "pitfall_train.json").read_text())
    assert lineage["world_size"] == 2 and lineage["steps"] == 2
    assert r.stdout.count("┃ kind") == 1  # one table, from rank 0
    assert (out / "model.safetensors").is_file()
