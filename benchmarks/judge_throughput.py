"""Default pointwise judge (SmolLM2-135M-Instruct on CPU): items/s batched vs one-by-one, measured in the same run.

Baseline: one ``judge(sample)`` call per item (batch 1). Compared: ``judge.batch(items)`` with the backend's micro-
batches of 8 (sorted by length, left-padded). Same judge instance, same items, interleaved rounds, for each torch
thread count asked for (one thread is slower but stable when other processes compete for the cores).

Also reported, from the batched run's scores: how often the judge rates the correct answer above the clearly wrong one
on the same easy question (a quality note about the default model, not a throughput figure).

Usage: python benchmarks/judge_throughput.py [--rounds 3] [--threads 1,2]
(writes benchmarks/results/judge_throughput.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

from agentenv.rewards.antihack import load_judge_pairs
from agentenv.rewards.base import Sample
from agentenv.rewards.judges import LocalLM, PointwiseJudge

RESULTS = Path(__file__).parent / "results" / "judge_throughput.json"
BATCH_SIZE = 8

# (question, reference, correct answer, clearly wrong answer)
EASY = load_judge_pairs()


def items() -> list[Sample]:
    return [Sample(answer, prompt=q, reference=ref) for q, ref, good, bad in EASY for answer in (good, bad)]


def measure(judge: PointwiseJudge, samples: list[Sample], rounds: int) -> dict:
    batched, single, scores = [], [], []
    for _ in range(rounds):  # interleave the arms so both see the same machine noise
        t0 = time.perf_counter()
        scores = judge.batch(samples)
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for s in samples:
            judge(s)
        single.append(time.perf_counter() - t0)
    one_by_one = len(samples) / statistics.median(single)
    batch8 = len(samples) / statistics.median(batched)
    return {
        "one_by_one_items_per_s": one_by_one,
        "batch8_items_per_s": batch8,
        "ratio": batch8 / one_by_one,
        "one_by_one_s": single,
        "batch8_s": batched,
        "values": [s.value for s in scores],
    }


def discrimination(values: list[float]) -> dict:
    good, bad = values[0::2], values[1::2]
    return {
        "pairs": len(good),
        "correct_above_wrong": sum(g > b for g, b in zip(good, bad, strict=True)),
        "mean_p_yes_correct": statistics.fmean(good),
        "mean_p_yes_wrong": statistics.fmean(bad),
        "accuracy_at_0.5": (sum(g >= 0.5 for g in good) + sum(b < 0.5 for b in bad)) / len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma-separated")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load_at_start = os.getloadavg()[0]  # other processes on the cores skew CPU timings: recorded, not hidden

    t0 = time.perf_counter()
    backend = LocalLM("default", batch_size=BATCH_SIZE)
    backend.load()
    load_s = time.perf_counter() - t0
    judge = PointwiseJudge(backend)
    samples = items()
    judge.batch(samples[:BATCH_SIZE])  # warm-up: first-call allocations are not throughput
    runs = {}
    for n in threads:
        torch.set_num_threads(n)
        runs[str(n)] = measure(judge, samples, args.rounds)
    quality = discrimination(runs[str(threads[0])]["values"])

    print(
        f"\nDefault pointwise judge (SmolLM2-135M-Instruct, fp32, CPU): {len(samples)} items, median of {args.rounds}"
    )
    print(f"{'torch threads':<15}{'one-by-one (items/s)':>22}{'batch 8 (items/s)':>20}{'ratio':>8}")
    for n, run in runs.items():
        print(f"{n:<15}{run['one_by_one_items_per_s']:>22.2f}{run['batch8_items_per_s']:>20.2f}{run['ratio']:>8.2f}")
    print(f"(model load from the converted cache: {load_s:.1f}s; 1-min load average {load_at_start:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end)")  # fmt: skip
    print(
        f"\nquality note: correct answer rated above the wrong one in {quality['correct_above_wrong']}/"
        f"{quality['pairs']} easy pairs; mean p_yes correct {quality['mean_p_yes_correct']:.3f} vs wrong"
        f" {quality['mean_p_yes_wrong']:.3f}; accuracy at threshold 0.5: {quality['accuracy_at_0.5']:.2f}"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for run in runs.values():
        run.pop("values")
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "judge_throughput",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "load_average_1min_at_start": load_at_start,
                    "load_average_1min_at_end": os.getloadavg()[0],
                },
                "notes": "PointwiseJudge() default template, reference given; baseline one judge(sample) call per "
                "item, compared judge.batch(items) with micro-batches of 8; same items and instance, interleaved "
                "rounds, median; quality from the batched scores of the first thread count",
                "model_load_s": load_s,
                "items": len(samples),
                "rounds": args.rounds,
                "by_threads": runs,
                "quality": quality,
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
