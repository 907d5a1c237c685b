"""A recipe's ``verdict:`` section: train a judge's P(yes) directly and audit it beside the untrained model.

``agentenv train recipes/judge-pyes.yaml`` builds (or reads) the verification data, splits it by question, trains
the model's P(yes) under the pointwise or pairwise judge prompt (:func:`agentenv.policies.verdict.train_verdict`),
and writes into the output folder:

- ``final/``: the trained judge (``agentenv judge-audit --judge model:<dir>/final``, or ``--pairwise`` for a
  pairwise one), with ``verdict.json`` (the training history) beside it;
- ``cases.jsonl``: the data with its splits (``agentenv judge-audit --cases`` reads it);
- ``results.json`` and ``report.md``: the untrained and the trained judge on the held-out test split — pointwise:
  AUROC, master-key FPR, wrong-answer FPR and format-variant FNR at the threshold chosen on validation, and the
  built-in probes; pairwise: error and position-inconsistency rates.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError


def run_verdict_recipe(recipe: Any, *, console: Any = None) -> dict[str, Any]:
    """Run a recipe whose ``verdict`` section is set; returns what ``results.json`` holds."""
    from agentenv.envs.judge.data import summary
    from agentenv.envs.judge.evaluate import goal_met
    from agentenv.policies.verdict import train_verdict

    v, m, out = recipe.verdict, recipe.model, recipe.output_dir
    if (out / "results.json").exists():
        raise ConfigError(f"output folder {str(out)!r} holds a run already: choose another output.dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1))
    say = console.print if console is not None else (lambda *a, **k: None)
    started = time.perf_counter()
    cases, split = _verdict_data(recipe, say)
    config = v.verdict_config()
    train, validation, test, measure = _verdict_rows(recipe, split, config)
    results: dict[str, Any] = {"recipe": recipe.name, "mode": v.mode, "data": summary(cases),
                               "train_rows": len(train), "seconds": {}}  # fmt: skip

    def save() -> None:
        tmp = out / "results.tmp"
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(out / "results.json")

    if recipe.eval.before:
        t0 = time.perf_counter()
        say(f"auditing the untrained model on {len(test)} held-out test {'pairs' if v.mode == 'pairwise' else 'cases'}")
        results["untrained"] = measure("untrained", m.name)
        results["seconds"]["audit untrained"] = round(time.perf_counter() - t0, 1)
        save()
    say(f"training the {v.mode} verdict on {len(train)} rows"
        + (f" for at most {config.max_minutes:g} minutes" if config.max_minutes else ""))  # fmt: skip
    t0 = time.perf_counter()
    trained = train_verdict(train, validation, model=m.name, output_dir=out, config=config, mode=v.mode,
                            num_threads=m.num_threads, progress=_progress_printer(say))  # fmt: skip
    results["seconds"]["train"] = round(time.perf_counter() - t0, 1)
    results["training"] = {"steps": trained.steps, "best": trained.best, "model_dir": trained.model_dir}
    t0 = time.perf_counter()
    results["trained"] = measure("trained", str(trained.model_dir))
    results["seconds"]["audit trained"] = round(time.perf_counter() - t0, 1)
    if v.mode == "pointwise":
        results["goal_met"] = goal_met(results["trained"]["test"])
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    save()
    (out / "report.md").write_text(report_table(results) + "\n")
    return results


def _verdict_data(recipe: Any, say: Callable[..., Any]) -> tuple[list[Any], dict[str, list[Any]]]:
    """The labelled cases (a file, or built from the envs) saved to ``cases.jsonl``, and their splits; the
    training split's master keys thinned."""
    from agentenv.envs.judge.data import build_cases, load_judge_cases, save_cases
    from agentenv.envs.judge.evaluate import thin_master_keys

    v = recipe.verdict
    if v.cases is not None:
        cases = load_judge_cases(v.cases)
    else:
        say(f"building the verification data: {v.world} world + {v.household} household questions")
        cases = build_cases(world=v.world, household=v.household, swe=v.swe, episodes=v.episodes, seed=recipe.seed,
                            master_keys=v.master_keys)  # fmt: skip
    save_cases(cases, recipe.output_dir / "cases.jsonl")
    split = {s: [c for c in cases if c.split == s] for s in ("train", "validation", "test")}
    for name in ("train", "test"):
        if not split[name]:
            raise ConfigError(f"verdict: the data has no {name!r} cases (each case's 'split' says where it belongs)")
    split["train"] = thin_master_keys(split["train"], v.train_master_keys)
    return cases, split


def _verdict_rows(
    recipe: Any, split: dict[str, list[Any]], config: Any
) -> tuple[list[Any], list[Any], list[Any], Callable[[str, str], dict[str, Any]]]:
    """The mode's training, validation and test rows (pairs in pairwise mode), and ``measure(label, model)``, the
    audit of a model folder on the test rows."""
    from agentenv.envs.judge.data import pairwise_cases
    from agentenv.envs.judge.evaluate import measure_pairwise, measure_pointwise
    from agentenv.rewards.judges import LocalLM, PairwiseJudge, PointwiseJudge

    v, threads = recipe.verdict, recipe.model.num_threads
    rng = random.Random(recipe.seed)
    if v.mode == "pairwise":
        rows = {s: pairwise_cases(split[s], seed=recipe.seed) for s in split}
        validation = rng.sample(rows["validation"], min(v.validation, len(rows["validation"])))
        test = [p for p in rows["test"] if p["label"] == "A"]  # one row a pair: the audit asks both orders

        def measure_pairs(label: str, model: str) -> dict[str, Any]:
            judge = PairwiseJudge(LocalLM(model, num_threads=threads), max_prompt_tokens=config.max_prompt_tokens)
            return measure_pairwise(judge, test, name=label)

        return rows["train"], validation, test, measure_pairs
    validation = rng.sample(split["validation"], min(v.validation, len(split["validation"])))

    def measure_cases(label: str, model: str) -> dict[str, Any]:
        judge = PointwiseJudge(LocalLM(model, num_threads=threads), max_prompt_tokens=config.max_prompt_tokens)
        return measure_pointwise(judge, validation, split["test"], name=label)

    return split["train"], validation, split["test"], measure_cases


def _progress_printer(say: Callable[..., Any]) -> Callable[[dict[str, Any]], None]:
    def progress(row: dict[str, Any]) -> None:
        if "auroc" in row:
            say(f"  step {row['step']}: validation AUROC {row['auroc']:.3f}, accuracy {row['accuracy']:.1%}")
        elif row["step"] % 50 == 0:
            say(f"  step {row['step']}/{row['of']}: loss {row['loss']:.3f}, {row['seconds']:.0f}s")

    return progress


def report_table(results: dict[str, Any]) -> str:
    """The untrained and trained judges side by side, as a Markdown table."""
    before, after = results.get("untrained"), results["trained"]

    def cell(source: dict[str, Any] | None, *keys: str) -> str:
        for key in keys:
            if source is None:
                return "-"
            source = source.get(key)
        return "-" if source is None else f"{source:.4f}" if isinstance(source, float) else str(source)

    if results["mode"] == "pairwise":
        rows = [("error rate (test pairs)", ("error_rate",)), ("position inconsistency", ("inconsistency_rate",))]
    else:
        rows = [("AUROC (test)", ("test", "auroc")), ("master-key FPR", ("test", "master_key_fpr")),
                ("wrong-answer FPR", ("test", "wrong_answer_fpr")), ("format-variant FNR", ("test", "format_fnr")),
                ("threshold (from validation)", ("test", "threshold")),
                ("built-in probes AUROC", ("probes", "auroc"))]  # fmt: skip
    lines = [f"# {results['recipe']}: the {results['mode']} judge before and after training", "",
             "| | untrained | trained |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {label} | {cell(before, *keys)} | {cell(after, *keys)} |" for label, keys in rows]
    return "\n".join(lines)


def print_verdict_results(console: Any, results: dict[str, Any]) -> None:
    """What ``agentenv train`` prints after a verdict recipe."""
    from rich.markdown import Markdown

    console.print(Markdown(report_table(results)))
    model_dir = results.get("training", {}).get("model_dir")
    if model_dir:
        flag = " --pairwise" if results["mode"] == "pairwise" else ""
        console.print(f"the judge: {model_dir}  (agentenv judge-audit{flag} --judge model:{model_dir} "
                      f"--cases {Path(model_dir).parent / 'cases.jsonl'})")  # fmt: skip
