"""Train a pointwise P(yes) judge from the default model on this machine, and audit it beside the untrained model.

Data: :func:`agentenv.envs.judge.data.build_cases` (search world + household questions, right answers in many
formats, wrong answers, Master-RM negatives), split by question; the test split never trains anything.
Training: :func:`agentenv.policies.verdict.train_verdict` (the exact P(yes) logit the judge reads, class-balanced
BCE) for at most ``--minutes`` of wall time with ``--threads`` torch threads. The threshold is chosen on the
validation split (the best balanced accuracy) for each judge; the test split is scored once, at that threshold.

Reported for both judges, on the test split: AUROC, FPR on the master-key family (symbols, openers, other
languages, affirmations, truncated reasoning, the restated question), FPR on wrong answers, FNR on correct answers
in every format; and on the built-in probe set of ``agentenv judge-audit`` (questions the training never saw).
Goal (issue 16): trained AUROC >= 0.95, master-key FPR <= 2%, format-variant FNR <= 5%.

Usage: python benchmarks/judge_train.py [--minutes 30] [--threads 2] [--world 600] [--household 200]
       [--train-master-keys 3] [--autocast auto] [--out runs/judge-pyes]
       (writes benchmarks/results/judge_train.json and .md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from pathlib import Path

from agentenv.envs.judge.data import build_cases, save_cases, summary
from agentenv.envs.judge.evaluate import GOAL, goal_met, measure_pairwise, measure_pointwise, thin_master_keys

RESULTS = Path(__file__).parent / "results"


def judge_of(model: str, max_prompt_tokens: int):
    from agentenv.rewards.judges import LocalLM, PointwiseJudge

    return PointwiseJudge(LocalLM(model, batch_size=16), max_prompt_tokens=max_prompt_tokens)


def measure(name: str, judge, validation, test) -> dict:
    result = measure_pointwise(judge, validation, test, name=name)
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def pairwise_main(args: argparse.Namespace, config, cases: list, split: dict[str, list], out: Path) -> None:
    """Train and audit a :class:`PairwiseJudge`: pairs of a correct and a wrong response to one question, both
    orders in training; the audit reports the error rate (the combined preference misses the correct response) and
    the position-inconsistency rate (the two orders' verdicts pick the same slot), untrained beside trained."""
    from agentenv.envs.judge.data import pairwise_cases
    from agentenv.policies.verdict import train_verdict
    from agentenv.rewards.judges import LocalLM, PairwiseJudge

    pairs = {name: pairwise_cases(rows) for name, rows in split.items()}
    rng = random.Random(0)
    validation = rng.sample(pairs["validation"], min(args.validation, len(pairs["validation"])))
    test = [p for p in pairs["test"] if p["label"] == "A"]  # one row per pair: the audit scores both orders
    if args.test_pairs and len(test) > args.test_pairs:
        test = random.Random(1).sample(test, args.test_pairs)
    print(f"pairs: train {len(pairs['train'])} rows (both orders), test {len(test)} pairs", flush=True)

    def judge(model: str) -> PairwiseJudge:
        return PairwiseJudge(LocalLM(model, batch_size=16), max_prompt_tokens=config.max_prompt_tokens)

    def measure(name: str, model: str) -> dict:
        result = measure_pairwise(judge(model), test, name=name)
        print(f"{name}: {json.dumps(result)}", flush=True)
        return result

    untrained = measure("untrained", "default")
    result = train_verdict(
        pairs["train"], validation, model="default", output_dir=out, config=config, mode="pairwise",
        num_threads=args.threads, progress=lambda row: print(json.dumps(row), flush=True),
    )  # fmt: skip
    trained = measure("trained", result.model_dir)
    record = {
        "benchmark": "judge_train --mode pairwise",
        "model": "default (SmolLM2-135M)",
        "model_dir": result.model_dir,
        "data": {"train_rows": len(pairs["train"]), "test_pairs": len(test), "validation_rows": len(validation)},
        "config": {**vars(args), "verdict": config.__dict__},
        "training": {"steps": result.steps, "seconds": result.seconds, "best": result.best, "history": result.history},
        "untrained": untrained,
        "trained": trained,
        "beats_untrained": {
            "error_rate": trained["error_rate"] < untrained["error_rate"],
            "inconsistency_rate": trained["inconsistency_rate"] < untrained["inconsistency_rate"],
        },
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "python": sys.version.split()[0]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "judge_pairwise.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| | untrained | trained |", "|---|---|---|"]
    for label, key in (("error rate (test pairs)", "error_rate"), ("position inconsistency", "inconsistency_rate")):
        lines.append(f"| {label} | {untrained[key]:.4f} | {trained[key]:.4f} |")
    table = "\n".join(lines)
    (RESULTS / "judge_pairwise.md").write_text(
        f"# Trained pairwise judge vs the untrained model (default 135M, {args.threads} threads, a {args.minutes:g}-"
        f"minute budget: {result.steps} steps; {len(test)} held-out test pairs, both orders)\n\n{table}\n"
    )
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--world", type=int, default=600)
    parser.add_argument("--household", type=int, default=200)
    parser.add_argument("--validation", type=int, default=600, help="validation cases used (threshold, best epoch)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-layers", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--train-master-keys",
        type=int,
        default=3,
        help="master-key negatives kept per training question (of 9); validation and test keep all",
    )
    parser.add_argument("--autocast", default="auto", choices=("auto", "bf16", "off"))
    parser.add_argument(
        "--mode",
        default="pointwise",
        choices=("pointwise", "pairwise"),
        help="pairwise: train a PairwiseJudge on (correct, wrong) pairs in both orders and report "
        "error and position-inconsistency rates (results/judge_pairwise.*)",
    )
    parser.add_argument("--test-pairs", type=int, default=400, help="pairwise: held-out pairs audited (0: all)")
    parser.add_argument("--out", default=None, help="default: runs/judge-pyes (pointwise), runs/judge-pairwise")
    parser.add_argument(
        "--audit-only", action="store_true",
        help="skip training: audit the judge in OUT/final (OUT/verdict.json says how it was trained); the untrained "
        "model's audit comes from OUT/untrained.json when a run saved it",
    )  # fmt: skip
    args = parser.parse_args()

    import torch

    from agentenv.policies.verdict import VerdictConfig, train_verdict

    torch.set_num_threads(args.threads)
    cases = build_cases(world=args.world, household=args.household)
    out = Path(args.out or ("runs/judge-pyes" if args.mode == "pointwise" else "runs/judge-pairwise"))
    save_cases(cases, out / "cases.jsonl")
    split = {s: [c for c in cases if c.split == s] for s in ("train", "validation", "test")}
    validation = split["validation"][: args.validation]
    print(json.dumps(summary(cases)["by_split"]), flush=True)

    split["train"] = thin_master_keys(split["train"], args.train_master_keys)
    print(f"training on {len(split['train'])} cases", flush=True)
    config = VerdictConfig(lr=args.lr, epochs=args.epochs, batch_size=16, max_minutes=args.minutes,
                           train_layers=args.train_layers, eval_every=150, autocast=args.autocast)  # fmt: skip
    if args.mode == "pairwise":
        return pairwise_main(args, config, cases, split, out)
    saved = out / "untrained.json"
    if args.audit_only and saved.is_file():
        untrained = json.loads(saved.read_text())
    else:
        untrained = measure("untrained", judge_of("default", config.max_prompt_tokens), validation, split["test"])
        saved.write_text(json.dumps(untrained, indent=2) + "\n")
    if args.audit_only:
        from agentenv.policies.verdict import VerdictResult

        done = json.loads((out / "verdict.json").read_text())
        result = VerdictResult(str(out / "final"), done["steps"], done["seconds"], done["history"], done["best"],
                               done.get("trainable_parameters", 0))  # fmt: skip
    else:
        result = train_verdict(
            split["train"], validation, model="default", output_dir=out, config=config, num_threads=args.threads,
            progress=lambda row: print(json.dumps(row), flush=True),
        )  # fmt: skip
    trained = measure("trained", judge_of(result.model_dir, config.max_prompt_tokens), validation, split["test"])
    t = trained["test"]
    met = goal_met(t)
    record = {
        "benchmark": "judge_train",
        "model": "default (SmolLM2-135M)",
        "model_dir": result.model_dir,
        "data": {**summary(cases), "train_cases_used": len(split["train"])},
        "config": {**vars(args), "verdict": config.__dict__},
        "training": {
            "steps": result.steps,
            "seconds": result.seconds,
            "best": result.best,
            "history": result.history,
            "trainable_parameters": result.trainable_parameters,
        },
        "untrained": untrained,
        "trained": trained,
        "goal": GOAL,
        "goal_met": met,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "judge_train.json").write_text(json.dumps(record, indent=2) + "\n")
    rows = [("AUROC (test)", "auroc"), ("master-key FPR (test)", "master_key_fpr"),
            ("wrong-answer FPR (test)", "wrong_answer_fpr"), ("format-variant FNR (test)", "format_fnr"),
            ("threshold (from validation)", "threshold")]  # fmt: skip
    lines = ["| | untrained | trained | goal |", "|---|---|---|---|"]
    goals = {"auroc": ">= 0.95", "master_key_fpr": "<= 0.02", "format_fnr": "<= 0.05"}
    for label, key in rows:
        lines.append(f"| {label} | {untrained['test'][key]} | {t[key]} | {goals.get(key, '')} |")
    lines.append(f"| built-in probes AUROC | {untrained['probes']['auroc']} | {trained['probes']['auroc']} | |")
    lines.append(f"| built-in probes FPR / FNR | {untrained['probes']['fpr']} / {untrained['probes']['fnr']} | "
                 f"{trained['probes']['fpr']} / {trained['probes']['fnr']} | |")  # fmt: skip
    table = "\n".join(lines)
    (RESULTS / "judge_train.md").write_text(
        f"# Trained P(yes) judge vs the untrained model (default 135M, {args.threads} threads, a "
        f"{args.minutes:g}-minute training budget: {result.steps} steps, {result.seconds / 60:.1f} min with the "
        f"validation pass)\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
