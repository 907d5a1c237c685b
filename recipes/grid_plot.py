"""``grid.png``: a budget grid as success against the SFT fraction (one line per evaluated env and other point);
any other grid as grouped bars (one group per row, one bar per evaluated env), each with its 95% interval (over
seeds with two or more, else over test episodes) and the starting model dashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _interval(s: dict[str, Any]) -> tuple[float, float, float]:
    seeds = s.get("over_seeds") or {}
    if seeds.get("ci_low") is not None:
        return seeds["mean"], max(0.0, seeds["ci_low"]), min(1.0, seeds["ci_high"])
    return s["success_rate"], s["success_ci_low"], s["success_ci_high"]


def _row_name(summary: dict[str, Any], point: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(str(v).split("/")[-1] for k, v in point.items() if k not in skip) or summary["name"]


def plot_grid(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Write the plot; ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(summary["rows"]) + 2), 4.4))
    if summary["kind"] == "budget":
        _budget_lines(ax, summary)
    else:
        _bars(ax, summary)
    for i, env in enumerate(summary["envs"]):
        before = (summary.get("before") or {}).get(env)
        if before:
            ax.axhline(before["success_rate"], color=f"C{i}", linestyle="--", linewidth=1, alpha=0.7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("success on held-out test tasks")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, title="dashed: before training" if summary.get("before") else None, title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _budget_lines(ax: Any, summary: dict[str, Any]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in summary["rows"]:
        groups.setdefault(_row_name(summary, r["point"], ("fraction",)), []).append(r)
    lines = [(env, name, rows) for env in summary["envs"] for name, rows in groups.items()]
    for k, (env, name, rows) in enumerate(lines):
        i = summary["envs"].index(env)
        rows = sorted(rows, key=lambda r: r["point"]["fraction"])
        points = [(r["point"]["fraction"], _interval(r["success"][env])) for r in rows if r["success"].get(env)]
        if not points:
            continue
        dodge = (k - (len(lines) - 1) / 2) * 0.008  # overlapping lines stay visible
        label = env.split("/")[-1] + (" (in-domain)" if i == 0 else "") + (f", {name}" if len(groups) > 1 else "")
        ax.errorbar([x + dodge for x, _ in points], [m for _, (m, _, _) in points],
                    yerr=[[m - lo for _, (m, lo, _) in points], [hi - m for _, (m, _, hi) in points]],
                    marker="o", capsize=4, color=f"C{i}", linestyle=["-", ":", "-."][k % 3] if len(groups) > 1 else "-",
                    label=label)  # fmt: skip
    rows = sorted({r["point"]["fraction"]: r for r in summary["rows"]}.values(), key=lambda r: r["point"]["fraction"])
    ax.set_xticks([r["point"]["fraction"] for r in rows],
                  [f"{r['point']['fraction']:g}\n{r['sft_demos'] or 0}d/{r['rl_episodes'] or 0}e" for r in rows],
                  fontsize=8)  # fmt: skip
    ax.set_xlabel("SFT fraction of the budget (demos / RL episodes)")
    ax.set_title(f"{summary['name']}: budget {summary['budget']:g} RL episodes, 1 demo = {summary['sft_cost']:g} "
                 "episodes")  # fmt: skip


def _bars(ax: Any, summary: dict[str, Any]) -> None:
    envs, rows = summary["envs"], summary["rows"]
    width = 0.8 / max(1, len(envs))
    for i, env in enumerate(envs):
        xs, heights, low, high = [], [], [], []
        for j, r in enumerate(rows):
            if r["success"].get(env):
                m, lo, hi = _interval(r["success"][env])
                xs.append(j + (i - (len(envs) - 1) / 2) * width)
                heights.append(m)
                low.append(m - lo)
                high.append(hi - m)
        label = env.split("/")[-1] + (" (in-domain)" if i == 0 else "")
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, color=f"C{i}", label=label)
    ax.set_xticks(range(len(rows)), [_row_name(summary, r["point"]) for r in rows], fontsize=8, rotation=20)
    ax.set_title(f"{summary['name']}: success after training ({len(rows)} points)")
