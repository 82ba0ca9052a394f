"""REDI against TRL's DPO on the same pairs, model and batch: seconds per optimizer step and peak memory.

    python bench/trainers.py                      # all three, 5 rounds, writes bench/out/trainers.json
    python bench/trainers.py --trainer redi       # one, in this process (what the rounds run)

Three trainers, each in a fresh process per round so that its peak RSS is its own:
``redi`` (trainers/redi.py: no reference model), ``dpo`` (TRL's DPOTrainer with
its reference copy, run at every step) and ``dpo-precompute`` (DPOTrainer with
``precompute_ref_log_probs``: one reference pass over the data before training,
timed as its setup). Pairs: toy problems of the hardest levels, the reference
solution against the same solution with its first result changed (so chosen and
rejected share a prefix and differ in length, like real pairs). Model: the toy
teacher (4 layers), fp32 without gradient checkpointing unless asked (the same
for all three: `pitfall train`'s defaults). Step times exclude the first two steps (warm-up); the
figure is the median over the rest, then the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if (
    Path(sys.path[0]).resolve() == REPO / "bench"
):  # run as a script: this file would shadow trainers/
    sys.path[0] = str(REPO)
TEACHER = REPO / "data" / "models" / "toy-teacher"
TRAINERS = ("redi", "dpo", "dpo-precompute")
WARMUP = 2


def pairs(n: int, seed: int = 0) -> list[dict]:
    from pipeline.toy.task import LEVELS, make_problem, reference_solution

    rng = random.Random(seed)
    hard = [lv for lv in LEVELS if lv.name.startswith(("ops5", "ops8"))] or list(LEVELS)
    rows = []
    for i in range(n):
        p = make_problem(hard[i % len(hard)], rng)
        good = reference_solution(p)
        # a trace that slips halfway and answers there: a shared prefix, a shorter completion
        lines = good.split("\n\n")[:-1]
        kept = lines[: max(1, len(lines) // 2)]
        head, _, value = kept[-1].rpartition(" = ")
        wrong = int(value.rstrip(".")) + 1
        bad = "\n\n".join([*kept[:-1], f"{head} = {wrong}.", f"The answer is \\boxed{{{wrong}}}."])
        prompt = f"<s><|user|>{p.text}\n<|assistant|>"
        rows.append({"prompt": prompt, "chosen": good, "rejected": bad})
    return rows


def run_one(
    trainer: str, n_pairs: int, batch: int, steps: int, bf16: bool, checkpointing: bool
) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    torch.manual_seed(0)
    data = Dataset.from_list(pairs(n_pairs))
    tok = AutoTokenizer.from_pretrained(TEACHER)
    model = AutoModelForCausalLM.from_pretrained(TEACHER)
    out = tempfile.mkdtemp(prefix="bench-trainers-")
    common = dict(
        output_dir=out, per_device_train_batch_size=batch, max_steps=steps, report_to=[],
        save_strategy="no", logging_steps=10_000, use_cpu=True, learning_rate=1e-6, seed=0,
        disable_tqdm=True, bf16=bf16, gradient_checkpointing=checkpointing,
    )  # fmt: skip
    sampler = (
        RssPeak()
    )  # what the trainer adds on top of the loaded policy: its reference, activations
    start = time.perf_counter()
    if trainer == "redi":
        from trainers.redi import REDIConfig, REDITrainer

        t = REDITrainer(model, REDIConfig(**common), data, tok)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, precompute_ref_log_probs=trainer == "dpo-precompute")
        t = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    setup = time.perf_counter() - start

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    t.add_callback(Clock())
    t.train()
    return {
        "trainer": trainer,
        "setup_s": setup,
        "step_s": statistics.median(times[WARMUP:]),
        "steps": len(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "added_mb": sampler.stop(),
    }


class RssPeak:
    """The peak resident memory above the level at start, sampled every 5 ms."""

    def __init__(self):
        import threading

        self.base = self.peak = _rss_mb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peak, _rss_mb()) - self.base


def _rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trainer", choices=TRAINERS, help="run one trainer in this process")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=22)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (TRL's default)")
    ap.add_argument(
        "--checkpointing", action="store_true", help="gradient checkpointing (TRL's default)"
    )
    a = ap.parse_args()
    if a.trainer:
        print(json.dumps(run_one(a.trainer, a.pairs, a.batch, a.steps, a.bf16, a.checkpointing)))
        return
    runs: dict[str, list[dict]] = {t: [] for t in TRAINERS}
    for r in range(a.rounds):
        for t in TRAINERS if r % 2 == 0 else reversed(TRAINERS):  # alternate the order
            argv = [sys.executable, __file__, "--trainer", t, "--pairs", str(a.pairs)]
            argv += ["--batch", str(a.batch), "--steps", str(a.steps)]
            argv += ["--bf16"] * a.bf16 + ["--checkpointing"] * a.checkpointing
            done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO)
            runs[t].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(t, runs[t][-1], file=sys.stderr)
    med = {
        t: {
            k: statistics.median(x[k] for x in rs)
            for k in ("setup_s", "step_s", "peak_rss_mb", "added_mb")
        }
        for t, rs in runs.items()
    }
    redi = med["redi"]
    print(f"{'trainer':<16}{'setup s':>9}{'s/step':>9}{'peak MB':>9}{'added MB':>10}")
    for t, m in med.items():
        print(
            f"{t:<16}{m['setup_s']:>9.2f}{m['step_s']:>9.3f}{m['peak_rss_mb']:>9.0f}"
            f"{m['added_mb']:>10.0f}"
        )
    for t in ("dpo", "dpo-precompute"):
        print(
            f"redi / {t}: step time {redi['step_s'] / med[t]['step_s']:.2f}x, "
            f"peak memory {redi['peak_rss_mb'] / med[t]['peak_rss_mb']:.2f}x, "
            f"memory added by the trainer {redi['added_mb'] / med[t]['added_mb']:.2f}x"
        )
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "trainers.json").write_text(json.dumps({"args": vars(a), "runs": runs, "median": med}))


if __name__ == "__main__":
    main()
