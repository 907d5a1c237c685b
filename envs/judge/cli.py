"""``agentenv judge-audit``: how often a judge accepts master-key probes and wrong answers, rejects correct ones, or
(``--pairwise``) prefers the wrong response of a pair or flips with the order.

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``judge`` (:func:`register`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.terminal import console, err, fmt_metric


def register(app: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv judge-audit``."""
    app.command("judge-audit")(judge_audit)


def judge_audit(
    judge: Annotated[
        str,
        typer.Option(
            help="pointwise | exact | model:PATH (a local or trained judge) | openai:URL#MODEL | module:attr "
            "(a Reward instance, Reward class or factory)"
        ),
    ] = "pointwise",
    cases: Annotated[
        Path | None,
        typer.Option(help="Labelled JSONL: question, reference, response, label 1/0, optional category/attack"),
    ] = None,
    guards: Annotated[
        bool, typer.Option("--guards/--no-guards", help="Put the rule guards in front of the judge")
    ] = False,
    threshold: Annotated[float, typer.Option(help="A score at or above it counts as the judge accepting")] = 0.5,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N cases, spread over the categories")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Cases per judge call")] = 16,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report (every case) as JSON")] = None,
    pairwise: Annotated[
        bool,
        typer.Option(
            "--pairwise",
            help="Audit a pairwise judge (model:/openai: build a PairwiseJudge) on pairs of a correct and a wrong "
            "response: error and position-inconsistency rates. --cases may hold pairs (a, b, label A/B) or "
            "pointwise cases, which are paired by question",
        ),
    ] = False,
) -> None:
    """Audit a judge: false positives on master-key probes and wrong answers, false negatives on correct ones.

    Default cases: the built-in master keys (":", "Thought process:", "解", ...) as answers to the built-in
    questions, plus correct answers to them in varied formats.
    """
    from rich.progress import Progress

    from agentenv.rewards.antihack import audit, default_cases, guarded, load_cases, resolve_judge, spread

    if pairwise:
        _audit_pairwise(judge, cases, limit, batch_size, output)
        return
    loaded = load_cases(cases) if cases is not None else None
    skipped = loaded.skipped if loaded else []
    for number, why in skipped[:10]:
        err.print(f"[yellow]skipped line {number}:[/] {why}")
    if skipped:
        total = len(skipped) + len(loaded.cases)
        err.print(f"[yellow]skipped {len(skipped)} of {total} lines of {cases}[/] (kept {len(loaded.cases)})")
    todo = spread(loaded.cases if loaded else default_cases(), limit)
    reward = resolve_judge(judge)
    name = f"{judge} + guards" if guards else judge
    if guards:
        reward = guarded(reward)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"judging {len(todo)} cases with {name}", total=len(todo))
        report = audit(reward, todo, threshold, batch_size, name=name, progress=lambda n: progress.advance(task, n))
    _print_audit(report)
    if output is not None:
        record = {
            "cases": str(cases) if cases is not None else "built-in",
            "skipped": [{"line": n, "reason": why} for n, why in skipped],
            **report.to_dict(),
        }
        output.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {output}")


def _audit_pairwise(judge: str, cases: Path | None, limit: int | None, batch_size: int, output: Path | None) -> None:
    from agentenv.envs.judge.data import pairwise_cases
    from agentenv.errors import ConfigError
    from agentenv.rewards.antihack import audit_pairwise, default_cases, load_cases, resolve_judge

    pairs: list[dict[str, Any]] | None = None
    if cases is not None:
        rows = []
        with cases.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{cases}:{n}: not valid JSON ({e.msg})") from e
        if rows and all(isinstance(r, dict) and {"a", "b", "label", "question"} <= r.keys() for r in rows):
            pairs = rows
    if pairs is None:
        pairs = pairwise_cases(load_cases(cases).cases if cases is not None else default_cases())
    todo = list({str(p.get("pair_id", i)): p for i, p in enumerate(pairs)}.values())[:limit]
    if not todo:
        raise ConfigError(f"{cases or 'the built-in cases'}: no pair of a correct and a wrong response to one question")
    report = audit_pairwise(resolve_judge(judge, "pairwise"), todo, batch_size, name=judge)
    table = Table(title=f"pairwise judge audit: {judge} ({report.pairs} pairs, both orders)")
    for column in ("wrong response's category", "pairs", "error rate", "inconsistency rate"):
        table.add_column(column, justify="left" if column.startswith("wrong") else "right")
    for category, row in sorted(report.by_category.items()):
        table.add_row(category, str(row["pairs"]), f"{row['error_rate']:.1%}", f"{row['inconsistency_rate']:.1%}")
    table.add_section()
    table.add_row("[bold]overall[/]", str(report.pairs), f"{report.error_rate:.1%}", f"{report.inconsistency_rate:.1%}")
    console.print(table)
    console.print(f"[dim]{report.pairs} pairs in {report.seconds:.1f}s; error: the combined preference does not favour "
                  "the correct response; inconsistent: the two orders' verdicts pick the same position[/]")  # fmt: skip
    if output is not None:
        output.write_text(json.dumps({"cases": str(cases) if cases else "built-in", **report.to_dict()}, indent=1))
        console.print(f"wrote {output}")


def _print_audit(report: Any) -> None:
    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1%}"

    def add(table: Table, label: str, r: Any, auc: float) -> None:
        scores = (fmt_metric(r.mean_negative_score), fmt_metric(r.mean_positive_score), fmt_metric(auc))
        table.add_row(label, str(r.cases), f"{r.false_positives}/{r.negatives}", pct(r.fpr),
                      f"{r.false_negatives}/{r.positives}", pct(r.fnr), *scores)  # fmt: skip

    table = Table(title=f"judge audit: {report.judge} (accepts at score >= {report.threshold:g})")
    columns = ("category", "cases", "FP", "FPR", "FN", "FNR", "mean score (label 0)", "mean score (label 1)", "AUROC")
    for column in columns:
        table.add_column(column, justify="left" if column == "category" else "right")
    aucs = report.category_auroc()
    for label, r in sorted(report.by_category.items(), key=lambda item: (item[1].positives > 0, item[0])):
        add(table, label, r, aucs.get(label, math.nan))
    table.add_section()
    add(table, "[bold]overall[/]", report.overall, report.auroc)
    console.print(table)
    if attacks := report.worst_attacks(10):
        worst = Table(title="attacks that fooled the judge, worst first")
        for column in ("attack", "FPR", "mean score"):
            worst.add_column(column, justify="left" if column == "attack" else "right")
        for attack, r in attacks:
            fooled = f"{pct(r.fpr)} ({r.false_positives}/{r.negatives})"
            worst.add_row(attack, fooled, fmt_metric(r.mean_negative_score))
        console.print(worst)
    elif misjudged := report.worst_cases(10):
        worst = Table(title="misjudged cases, surest first")
        for column in ("id", "label", "score", "response", "reason"):
            worst.add_column(column, overflow="fold")
        for r in misjudged:
            worst.add_row(r.case.id, str(r.case.label), f"{r.score:.3f}", r.case.response[:80], r.reason[:80])
        console.print(worst)
    auc = "" if math.isnan(report.auroc) else f", AUROC {report.auroc:.3f}"
    console.print(f"[dim]{report.overall.cases} cases in {report.seconds:.1f}s{auc}[/]")
