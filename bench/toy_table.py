"""The toy paper table (issue 15): does data curated from the teacher's mistakes make a better student?

    python bench/toy_table.py             # the whole table; resumes where it stopped; writes BENCHMARKS.md
    python bench/toy_table.py --quick     # a smoke run of every step on a few problems (minutes)

Every step is a `pitfall` command; `WORK/commands.log` lists them in order with
their seconds, and BENCHMARKS.md gets the table, the commands' shape and the
time the whole took.

1. Curate `data/toy/curate.jsonl` (300 problems of the train split) with the toy
   teacher: DART prop2diff sampling (so the DART arm has its data; the other
   arms take their share of the same traces), segment, mc-binary localization.
   A copy of that store is localized again with the toy world's exact checker.
2. Export three datasets: `first` (REDI's SFT set: the first correct trace per
   problem, outcome pairs, step pairs from mc-binary first errors), `dart`
   (prop2diff's choice of correct traces) and `exact` (step pairs from the
   exact first errors).
3. Train from `toy-student`: SFT, SFT with DART prop2diff data, and from each
   SFT checkpoint DPO (outcome pairs), REDI, step-DPO (mc-binary labels) and
   step-DPO (exact labels).
4. Learning rates: each arm tries LRS[arm] at seed 0 and keeps the best pass@1
   on `data/toy/val.jsonl` (a part of train disjoint from the curated one);
   the preference arms start from the SFT learning rate chosen that way. The
   test split is only ever evaluated on.
5. Evaluate every checkpoint of seeds 0, 1, 2, the untrained student and the
   teacher on `data/toy/test.jsonl`: pass@1 over n = 8 samples at T = 1 and
   pass@8, per level and overall (`pitfall eval`, vLLM: 3x the transformers
   backend's rate on these models, whose wrong samples run long).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if Path(sys.path[0]).resolve() == REPO / "bench":  # run as a script: keep imports at the repo
    sys.path[0] = str(REPO)
TOY = REPO / "data" / "toy"
STUDENT = REPO / "data" / "models" / "toy-student"
TEACHER = REPO / "data" / "models" / "toy-teacher"
SEEDS = (0, 1, 2)
N, KS = 8, (1, 8)
SFT_LRS = (1e-4, 3e-4, 1e-3)  # the student was trained from scratch at 2e-3
# 1e-3 collapsed DPO (0%) and REDI (2.6%) on validation and 1e-5 was best at the
# edge of the first sweep (2026-12-06), so the range goes down to REDI's 1e-6
PREF_LRS = (1e-6, 1e-5, 1e-4)
BEGIN, END = "<!-- toy_table:begin -->", "<!-- toy_table:end -->"


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # pitfall train KIND
    data: str  # the export it trains on: first | dart | exact
    from_sft: bool  # starts from the SFT arm's checkpoint of the same seed
    lrs: tuple[float, ...]


ARMS = (
    Arm("sft", "sft", "first", False, SFT_LRS),
    Arm("sft-dart", "sft", "dart", False, SFT_LRS),
    Arm("dpo", "dpo", "first", True, PREF_LRS),
    Arm("redi", "redi", "first", True, PREF_LRS),
    Arm("step-dpo-mc", "step-dpo", "first", True, PREF_LRS),
    Arm("step-dpo-exact", "step-dpo", "exact", True, PREF_LRS),
)
LABELS = {
    "student": "toy-student (untrained)",
    "teacher": "toy-teacher",
    "sft": "SFT (first correct per problem)",
    "sft-dart": "SFT, DART prop2diff data",
    "dpo": "SFT → DPO (outcome pairs)",
    "redi": "SFT → REDI",
    "step-dpo-mc": "SFT → step-DPO, mc-binary labels",
    "step-dpo-exact": "SFT → step-DPO, exact labels",
}


class Bench:
    def __init__(self, work: Path, quick: bool):
        self.work, self.quick = work, quick
        self.store, self.exact_store = work / "store.duckdb", work / "exact.duckdb"
        self.log = work / "commands.log"
        self.sweep: dict[str, dict[float, float]] = {}  # arm -> lr -> validation pass@1
        work.mkdir(parents=True, exist_ok=True)
        self.curate, self.val, self.test = (self._problems(n) for n in ("curate", "val", "test"))
        self.config = work / "pitfall.toml"
        self.config.write_text(
            f"""[store]
path = "{self.store}"
[dart]
strategy = "prop2diff"
[run]
inputs = ["{self.curate}"]
[export]
dir = "{work / "export" / "first"}"
[eval]
n = {N}
k = {list(KS)}
"""
        )

    def _problems(self, name: str) -> Path:
        """The shipped split, or in --quick its first 3 problems per level."""
        if not self.quick:
            return TOY / f"{name}.jsonl"
        rows = [json.loads(x) for x in (TOY / f"{name}.jsonl").read_text().splitlines()]
        picked = [
            r
            for lv in dict.fromkeys(r["level"] for r in rows)
            for r in [r for r in rows if r["level"] == lv][:3]
        ]
        path = self.work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in picked))
        return path

    def pitfall(self, *args: str | Path, store: Path | None = None, reweight: dict | None = None):
        """``reweight``: the SFT recipe, for `reweight` and for the `export` that writes it."""
        argv = ["--config", str(self.config)]
        argv += ["--store", str(store)] if store else []
        argv += [str(a) for a in args]
        env = {f"PITFALL_REWEIGHT__{k.upper()}": v for k, v in (reweight or {}).items()}
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), f"pitfall {shlex.join(argv)}"])
        print(f"$ {shown}", flush=True)
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "flows.cli", *argv],
            cwd=REPO,
            env=os.environ | env,
            check=True,
        )
        seconds = time.monotonic() - start
        with self.log.open("a") as f:
            f.write(f"{seconds:8.1f} s  {shown}\n")

    # --- 1-2: curation and the three exports
    def curate_and_export(self) -> None:
        if not (self.work / "export" / "exact").exists():
            stages = ("ingest", "sample", "segment", "localize")
            self.pitfall("run", *(a for stage in stages for a in ("--stage", stage)))
            if not self.exact_store.exists():  # a copy from before the mc-binary pairs
                shutil.copy(self.store, self.exact_store)
            first, dart = {"select": "first"}, {"select": "prop2diff"}
            self.pitfall("negatives", "--kinds", "outcome", "--kinds", "step")
            self.pitfall("reweight", reweight=first)
            self.pitfall("export", "--dir", self.work / "export" / "first", reweight=first)
            self.pitfall("reweight", reweight=dart)
            self.pitfall("export", "--dir", self.work / "export" / "dart", reweight=dart)
            x = self.exact_store
            self.pitfall("localize", "--method", "exact", store=x)
            self.pitfall("negatives", "--kinds", "step", "--method", "exact", store=x)
            self.pitfall("reweight", store=x, reweight=first)
            self.pitfall("export", "--dir", self.work / "export" / "exact", store=x, reweight=first)

    # --- 3-4: training, the learning rate chosen on validation
    def checkpoint(self, arm: Arm, lr: float, seed: int, sft_lr: float | None) -> Path:
        base = f"-from-sft{sft_lr:g}" if arm.from_sft else ""
        out = self.work / "ckpt" / f"{arm.name}-lr{lr:g}{base}-s{seed}"
        if not (out / "pitfall_train.json").exists():
            model = self.checkpoint(ARMS[0], sft_lr, seed, None) if arm.from_sft else STUDENT
            self.pitfall(
                "train", arm.kind, "--model", model, "--data", self.work / "export" / arm.data,
                "--out", out, "--learning-rate", f"{lr:g}", "--seed", str(seed),
            )  # fmt: skip
        return out

    def evaluate(self, model: Path, problems: Path) -> None:
        self.pitfall("eval", "--model", model, "--problems", problems)

    def pass_at_1(self, model: Path, problems: Path) -> float:
        return self.scores(problems).get((str(model), "all"), {}).get("pass@1", float("nan"))

    def scores(self, problems: Path) -> dict[tuple[str, str], dict]:
        from pipeline.stages import evaluate as eval_stage
        from pipeline.stages.ingest import source_name
        from pipeline.store import Store

        with Store.reader(self.store) as store:
            table = eval_stage.compare(store, [source_name(problems)], list(KS))
        return {(r["model"], r["level"]): r for r in table.iter_rows(named=True)}

    def tune(self) -> dict[str, float]:
        """Each arm's learning rate: the best validation pass@1 at seed 0."""
        chosen: dict[str, float] = {}
        lrs = {a.name: a.lrs[1:2] if self.quick else a.lrs for a in ARMS}
        for arm in ARMS:
            sft_lr = chosen.get("sft") if arm.from_sft else None
            tried = {}
            for lr in lrs[arm.name]:
                ckpt = self.checkpoint(arm, lr, 0, sft_lr)
                self.evaluate(ckpt, self.val)
                tried[lr] = self.pass_at_1(ckpt, self.val)
            chosen[arm.name] = max(tried, key=lambda lr: tried[lr])
            self.sweep[arm.name] = tried
        return chosen

    # --- 5: the table
    def run(self) -> None:
        self.curate_and_export()
        lrs = self.tune()
        seeds = SEEDS[:1] if self.quick else SEEDS
        models: dict[str, list[Path]] = {"student": [STUDENT], "teacher": [TEACHER]}
        for arm in ARMS:
            sft_lr = lrs["sft"] if arm.from_sft else None
            models[arm.name] = [self.checkpoint(arm, lrs[arm.name], s, sft_lr) for s in seeds]
        for paths in models.values():
            for path in paths:
                self.evaluate(path, self.test)
        result = self.collect(models, lrs)
        result["seconds"] = self.seconds()
        (self.work / "result.json").write_text(json.dumps(result, indent=1))
        section = render(result, self.quick)
        print(section)
        if not self.quick:
            write_section(REPO / "BENCHMARKS.md", section)

    def seconds(self) -> float:
        """What the commands took, over every invocation (a resumed table counts all)."""
        return sum(float(line.split()[0]) for line in self.log.read_text().splitlines())

    def collect(self, models: dict[str, list[Path]], lrs: dict[str, float]) -> dict:
        from pipeline.store import Store

        scores = self.scores(self.test)
        levels = [*sorted({lv for _, lv in scores if lv != "all"}), "all"]
        rows = []
        for name, paths in models.items():
            row = {"arm": name, "label": LABELS[name], "seeds": len(paths), "lr": lrs.get(name)}
            for lv in levels:
                for k in KS:
                    vals = [scores[(str(p), lv)][f"pass@{k}"] for p in paths]
                    row[f"{lv} pass@{k}"] = [v * 100 for v in vals]
            arm = next((a for a in ARMS if a.name == name), None)
            if arm:
                # a preference arm's compute includes the SFT run it starts from
                runs = [_lineage(p) for p in paths]
                row["train_seconds"] = [
                    r["seconds"] + ((r["base_lineage"] or {}).get("seconds", 0)) for r in runs
                ]
                row["train_rows"] = runs[0]["data"]["rows"]
            rows.append(row)
        with Store.reader(self.store) as s:
            curation = s.query(
                "SELECT (SELECT count(*) FROM traces) AS traces,"
                " (SELECT sum(completion_tokens)::BIGINT FROM traces) AS teacher_tokens,"
                " (SELECT count(*) FROM rollouts) AS rollouts,"
                " (SELECT sum(completion_tokens)::BIGINT FROM rollouts) AS rollout_tokens,"
                " (SELECT count(*) FROM problems) AS problems"
            ).row(0, named=True)
        return {"levels": levels, "rows": rows, "curation": curation, "lrs": lrs,
                "sweep": {a: {f"{lr:g}": v for lr, v in t.items()} for a, t in self.sweep.items()},
                "log": self.log.read_text()}  # fmt: skip


def _lineage(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "pitfall_train.json").read_text())


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render(result: dict, quick: bool) -> str:
    """BENCHMARKS.md's section: the table, the compute, the sweep and the commands."""
    levels, rows, cur = result["levels"], result["rows"], result["curation"]
    head = ["arm", "lr", *(lv.removesuffix("-v99") for lv in levels[:-1])]
    head += ["**all pass@1**", "all pass@8", "train rows", "train s", "rollouts"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], f"{r['lr']:g}" if r["lr"] else ""]
        cells += [_mean_spread(r[f"{lv} pass@1"]) for lv in levels[:-1]]
        cells += [f"**{_mean_spread(r['all pass@1'])}**", _mean_spread(r["all pass@8"])]
        cells += [f"{r['train_rows']:,}" if "train_rows" in r else ""]
        cells += [f"{statistics.mean(r['train_seconds']):.0f}" if "train_seconds" in r else ""]
        mc = r["arm"] == "step-dpo-mc"
        cells += [f"{cur['rollouts']:,}" if mc else ("0" if "train_rows" in r else "")]
        lines.append("| " + " | ".join(cells) + " |")
    sweep = ["| arm | validation pass@1 at each lr tried (seed 0) | chosen |", "|---|---|---|"]
    for arm, tried in result["sweep"].items():
        got = ", ".join(f"{lr}: {v * 100:.1f}" for lr, v in tried.items())
        sweep.append(f"| {LABELS[arm]} | {got} | {result['lrs'][arm]:g} |")
    return "\n".join(
        [
            f"Whole table: **{result['seconds'] / 60:.0f} min** of commands"
            f" ({'--quick' if quick else 'python bench/toy_table.py'}).",
            "",
            "pass@1 (mean of n = 8 samples at T = 1) and pass@8 on `data/toy/test.jsonl`,"
            " in %, mean ± standard deviation over seeds 0, 1, 2 (the student and the"
            " teacher: one evaluation each); per level pass@1. train s: training seconds"
            " per seed, a preference arm's including its SFT start; rollouts: the mc-binary"
            " rollouts behind an arm's labels (every arm shares the teacher's traces below).",
            "",
            *lines,
            "",
            f"Curation (shared by every arm): {cur['problems']} problems,"
            f" {cur['traces']:,} teacher traces ({cur['teacher_tokens']:,} tokens),"
            f" {cur['rollouts']:,} mc-binary rollouts ({cur['rollout_tokens'] or 0:,} tokens,"
            " used by step-DPO with mc-binary labels only; exact labels cost none).",
            "",
            *sweep,
            "",
            "<details><summary>Every command, with its seconds</summary>",
            "",
            "```",
            result["log"].rstrip(),
            "```",
            "</details>",
        ]
    )


def write_section(path: Path, section: str) -> None:
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n" + section + "\n" + text[end:])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 problems per level, 1 seed, 1 lr")
    ap.add_argument("--work", type=Path, help="default: bench/out/toy_table[_quick]")
    args = ap.parse_args()
    work = args.work or REPO / "bench" / "out" / ("toy_table_quick" if args.quick else "toy_table")
    Bench(work, args.quick).run()


if __name__ == "__main__":
    main()
