"""Verification throughput: the worker pool against a plain sequential loop.

    python bench/verify_throughput.py

Items: every MATH-500 problem's gold answer against four candidate answers
(its own reference answer as written in the solution, a numeric perturbation,
a sign flip and an unrelated value): 2,000 distinct (gold, answer) checks, no
repeats, so the pool's dedupe gives it nothing. The sequential loop is what a
script would do: parse gold, parse answer, verify, in the main thread with
math-verify's own timeouts. Then the same pool with 3 pathological items mixed
in shows that they cost their timeout and nothing more.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.text import last_boxed
from pipeline.verify import Check, VerifyPool

MATH500 = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "math500" / "test.jsonl"


def items() -> list[Check]:
    checks = []
    for row in map(json.loads, MATH500.read_text().splitlines()):
        gold = row["answer"]
        own = last_boxed(row["solution"]) or gold
        checks += [
            Check(gold, own),
            Check(gold, f"{own}+1"),
            Check(gold, f"-({own})"),
            Check(gold, "17"),
        ]
    return list(dict.fromkeys(checks))


def sequential(checks: list[Check]) -> list[bool]:
    from math_verify import LatexExtractionConfig, parse, verify

    cfg = [LatexExtractionConfig()]
    return [verify(parse(f"${c.gold}$", cfg), parse(f"${c.answer}$", cfg)) for c in checks]


def main() -> None:
    checks = items()
    t = time.perf_counter()
    seq = sequential(checks)
    seq_s = time.perf_counter() - t

    with VerifyPool(workers=2, timeout_s=5.0) as pool:
        pool.run(checks[:20])  # workers warm (imports done), as in a long run
        t = time.perf_counter()
        out = pool.run(checks)
        pool_s = time.perf_counter() - t
        agree = sum((o.status == "correct") == s for o, s in zip(out, seq, strict=True))

        nasty = [
            Check("1", "(" * 3000 + "1" + ")" * 3000),
            Check("2", "2^{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}"),
            Check("3", "\\sqrt{" * 500 + "2" + "}" * 500),
        ]
        t = time.perf_counter()
        mixed = pool.run(nasty + checks)
        mixed_s = time.perf_counter() - t
    result = {
        "items": len(checks),
        "sequential_s": round(seq_s, 2),
        "sequential_items_per_s": round(len(checks) / seq_s, 1),
        "pool_s": round(pool_s, 2),
        "pool_items_per_s": round(len(checks) / pool_s, 1),
        "speedup": round(seq_s / pool_s, 2),
        "verdicts_agree": f"{agree}/{len(checks)}",
        "with_3_pathological_s": round(mixed_s, 2),
        "pathological_statuses": [o.status for o in mixed[:3]],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
