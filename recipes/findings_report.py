"""Rendering :func:`agentenv.recipes.findings.build_report`: ``report.md``, ``report.html`` (plots inline) and
``report.json``, plus one ``report_<finding>.png`` per measured finding (the paper's success beside ours)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

VERDICT_MARK = {"reproduced": "✅ reproduced", "opposite": "❌ opposite", "not at this scale": "➖ not at this scale",
                "not run": "⏳ not run"}  # fmt: skip


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"


def _ours(arm: dict[str, Any]) -> str:
    low, high = arm["ci"]
    return f"{arm['rate']:.1%} [{low:.0%}, {high:.0%}] ({arm['successes']}/{arm['episodes']})"


def _pair_text(p: dict[str, Any], named: bool = False) -> str:
    """One ordering's line; ``named`` prefixes its group (``within``) where a finding has several."""
    expected = f"{p['within'] + ': ' if named else ''}{p['a']} {p['expected']} {p['b']}"
    how = " paired by task" if p.get("paired") else ""
    return (f"{expected}: ours {100 * p['diff']:+.1f} points [{100 * p['ci_low']:+.0f}, {100 * p['ci_high']:+.0f}]"
            f"{how} — {p['outcome']}")  # fmt: skip


def finding_markdown(f: dict[str, Any]) -> list[str]:
    lines = [f"## {f['finding']}: {VERDICT_MARK[f['verdict']]}", "", f"**Paper** ({f['source']}): {f['claim']}", "",
             f"*Paper's setting:* {f['setting']}", ""]  # fmt: skip
    if f["verdict"] == "not run":
        return [*lines, f"*Ours:* {f['why']}.", ""]
    envs = ", ".join(e.split("/")[-1] for e in f["envs"])
    failed = f" {f['failed']} cell(s) did not finish." if f["failed"] else ""
    lines += [f"*Ours:* grid `{f['grid']}` ({f['grid_path']}), model {f['model']}, seeds {f['seeds']}, evaluated on "
              f"{envs}.{failed}", "", "| within | arm | paper | ours (95% CI, successes/episodes) | our cell |",
              "|---|---|---:|---:|---|"]  # fmt: skip
    for a in f["arms"]:
        lines.append(f"| {a['within']} | {a['name']} | {_pct(a['paper'])} | {_ours(a)} | {a['detail']} |")
    lines += ["", "Orderings the paper reports, checked on ours (difference in success, 95% interval):", ""]
    named = len({p.get("within") for p in f["pairs"]}) > 1
    lines += [f"- {_pair_text(p, named)}" for p in f["pairs"]]
    lines += ["", f"**Verdict: {f['verdict']}** — {f['why']}.", ""]
    if f.get("note"):
        lines += [f"<details><summary>Notes on the paper's numbers</summary>\n\n{f['note']}\n\n</details>", ""]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    paper = report["paper"]
    lines = [f"# Findings of \"{paper['title']}\" (arXiv {paper['arxiv']}) at our scale", "",
             f"Grids under `{report['run_dir']}`. Success rates are on held-out test tasks; the paper's are from its "
             "tables (as data in `agentenv/recipes/findings.yaml`, each with its table). A ranked pair holds when our "
             "difference's 95% interval lies above 0; the verdicts are defined in `agentenv/recipes/findings.py`.",
             "", "| finding | paper | verdict | why |", "|---|---|---|---|"]  # fmt: skip
    for f in report["findings"]:
        lines.append(f"| {f['finding']} | {f['claim']} | {VERDICT_MARK[f['verdict']]} | {f['why']} |")
    lines.append("")
    for f in report["findings"]:
        lines += finding_markdown(f)
    return "\n".join(lines)


def plot_finding(f: dict[str, Any], path: Path) -> Path | None:
    """Paper vs ours for each arm (grouped bars; ours with its 95% interval)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    arms = f["arms"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(arms) + 1.5), 3.8))
    xs = range(len(arms))
    paper = [a["paper"] / 100 if a["paper"] is not None else 0 for a in arms]
    ours = [a["rate"] for a in arms]
    err = [[a["rate"] - a["ci"][0] for a in arms], [a["ci"][1] - a["rate"] for a in arms]]
    ax.bar([x - 0.2 for x in xs], paper, 0.4, color="C7", label="paper")
    ax.bar([x + 0.2 for x in xs], ours, 0.4, yerr=err, capsize=3, color="C0", label="ours (95% CI)")
    labels = [a["name"] + (f"\n({a['within']})" if len({b["within"] for b in arms}) > 1 else "") for a in arms]
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set(ylim=(0, 1.05), ylabel="success", title=f"{f['finding']}: {f['verdict']}")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_html(report: dict[str, Any], plots: dict[str, Path]) -> str:
    """The report as one HTML page: the summary table, then each finding with its plot inline."""
    import re

    def md_table(lines: list[str]) -> str:
        rows = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines if "---" not in line]
        head, body = rows[0], rows[1:]
        cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
        return "<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>" + cells + "</table>"

    def render(lines: list[str]) -> str:
        out, table = [], []
        for line in [*lines, ""]:
            if line.startswith("|"):
                table.append(line)
                continue
            if table:
                out.append(md_table(table))
                table = []
            text = html.escape(line)
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
            text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
            text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
            if line.startswith("## "):
                out.append(f"<h2>{text[3:]}</h2>")
            elif line.startswith("# "):
                out.append(f"<h1>{text[2:]}</h1>")
            elif line.startswith("- "):
                out.append(f"<li>{text[2:]}</li>")
            elif text:
                out.append(f"<p>{text}</p>")
        return "\n".join(out)

    parts = [render(report_markdown(report).split("\n## ")[0].splitlines())]
    for f in report["findings"]:
        parts.append(render([line for line in finding_markdown(f) if not line.startswith("<details")]))
        if f["finding"] in plots:
            data = base64.b64encode(plots[f["finding"]].read_bytes()).decode()
            parts.append(f'<img alt="{f["finding"]}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}")  # fmt: skip
    return f"<!doctype html><meta charset='utf-8'><title>findings</title><style>{style}</style>\n" + "\n".join(parts)


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``report.md``, ``report.html``, ``report.json`` and the plots in ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for f in report["findings"]:
        if f["verdict"] != "not run" and f.get("arms"):
            path = plot_finding(f, out / f"report_{f['finding']}.png")
            if path is not None:
                plots[f["finding"]] = path
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    paths["md"].write_text(report_markdown(report) + "\n", encoding="utf-8")
    paths["html"].write_text(report_html(report, plots), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    return paths
