"""``agentenv report RUN_DIR``: the seed paper's findings beside our grids' numbers, with a verdict for each.

The paper's numbers are data (``findings.yaml`` in this folder: every value with the table it comes from). A grid
names its finding (``finding:`` in the grid YAML); the report finds every ``grid.json`` under RUN_DIR, maps the
grid's rows to the paper's arms (:func:`our_arms`), and checks each ordering the paper reports:

* for every pair the paper ranks (a above b), our difference in success with its 95% interval over the test
  episodes, pooled over seeds: paired task by task when both arms' per-task outcomes are in ``grid.json`` (every
  cell of a grid plays the same test tasks, so only the tasks one arm solved and the other did not decide), else as
  two independent proportions; for a pair the paper calls even (≈), whether ours is too;
* the verdict: **reproduced** when every ranked pair holds with an interval above 0 (and no tie is broken);
  **opposite** when some ranked pair is reversed with an interval below 0; otherwise **not at this scale** (with
  whether our point estimates at least go the paper's way).

Writes ``report.md``, ``report.html`` (plots inline) and ``report.json`` into RUN_DIR.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FINDINGS = ("algorithms", "density", "exploration", "transfer", "swe_reward", "budget")
#: Transfer at CPU scale has its own environments; each of our roles stands for the paper's arm (Table 5, Tables
#: 3/10): a simpler world's model on a harder world, the harder world's own model, and the starting model there.
TRANSFER_ROLES = {"direct-on-harder": "direct-on-w4o6q8", "simple-on-harder": "w2o3q4-on-w4o6q8",
                  "start-on-harder": None}  # fmt: skip
TRANSFER_ORDER = [[["direct-on-harder"], ["simple-on-harder"], ["start-on-harder"]]]


@dataclass
class Arm:
    name: str
    successes: int
    episodes: int
    env: str
    paper: float | None = None  # the paper's success, percent
    detail: str = ""
    outcomes: dict[str, bool] | None = None  # "<seed>/<task>" -> solved, when grid.json holds them

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else math.nan

    def interval(self) -> tuple[float, float]:
        from agentenv.rollout import wilson_interval

        return wilson_interval(self.successes, self.episodes)


@dataclass
class Group:
    within: str
    order: list[list[str]]  # tiers, best first
    arms: dict[str, Arm] = field(default_factory=dict)


def paper_data(path: str | Path | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or Path(__file__).with_name("findings.yaml")).read_text())


def find_grids(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Finding -> the newest ``grid.json`` under ``run_dir`` (itself, or up to two folders down) that names it."""
    run_dir = Path(run_dir)
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in [run_dir / "grid.json", *run_dir.glob("*/grid.json"), *run_dir.glob("*/*/grid.json")]:
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        finding = summary.get("finding")
        if finding and (finding not in found or path.stat().st_mtime > found[finding][0]):
            summary["path"] = str(path)
            found[finding] = (path.stat().st_mtime, summary)
    return {k: v for k, (_, v) in found.items()}


def _arm(name: str, stats: dict[str, Any] | None, env: str, paper: float | None, detail: str = "") -> Arm | None:
    if not stats or not stats.get("episodes"):
        return None
    outcomes = stats.get("outcomes")
    outcomes = outcomes if isinstance(outcomes, dict) and len(outcomes) == stats["episodes"] else None
    successes = round(stats["success_rate"] * stats["episodes"])
    return Arm(name, successes, stats["episodes"], env, paper, detail, outcomes)


def _paper_values(finding: dict[str, Any], key: str = "paper") -> dict[str, float | None]:
    return {str(a["arm"]): a.get(key) for a in finding.get("arms", [])}


def our_arms(name: str, summary: dict[str, Any], finding: dict[str, Any]) -> list[Group]:
    """The paper's ordering groups for finding ``name``, each with our arms from the grid ``summary``."""
    envs = summary["envs"]
    paper = _paper_values(finding)
    groups = [Group(str(o["within"]), [[str(a) for a in tier] for tier in o["order"]]) for o in finding["order"]]
    rows = summary["rows"]
    if name == "transfer":
        return _transfer(summary, finding)
    for g in groups:
        env = envs[1] if name == "budget" and g.within.startswith("harder") and len(envs) > 1 else envs[0]
        values = _paper_values(finding, "harder") if env != envs[0] else paper
        for row in rows:
            arm = arm_name(name, row["point"])
            if arm is not None and any(arm in tier for tier in g.order):
                made = _arm(arm, row["success"].get(env), env, values.get(arm), _describe(row["point"]))
                if made is not None:
                    g.arms[arm] = made
        g.order = [[a for a in tier if a in g.arms] for tier in g.order]
        g.order = [tier for tier in g.order if tier]
    return [g for g in groups if g.arms]


def arm_name(name: str, point: dict[str, Any]) -> str | None:
    """Our row's arm in the paper's terms."""
    if name == "algorithms":
        return str(point.get("rl.algorithm"))
    if name == "density":
        return f"{point.get('rl.algorithm')}-{point.get('variant')}"
    if name == "exploration":
        return f"{float(point['env.kwargs.budget_factor']):.1f}" if "env.kwargs.budget_factor" in point else None
    if name == "swe_reward":
        return str(point.get("variant"))
    if name == "budget":
        f = float(point["fraction"])
        return f"demos{round(100 * f)}-episodes{round(1000 * (1 - f))}"
    return None


def _describe(point: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())


def _transfer(summary: dict[str, Any], finding: dict[str, Any]) -> list[Group]:
    """Ours: the ``simple`` variant (trained on the simpler world) and the ``direct`` one (trained on the harder
    world), both on the direct variant's env; the starting model there."""
    paper = _paper_values(finding)
    rows = {r["point"].get("variant"): r for r in summary["rows"]}
    direct, simple = rows.get("direct"), rows.get("simple")
    if direct is None or simple is None:
        return []
    home = next((e for e in summary["envs"] if direct["success"].get(e)), None)
    g = Group("harder world", [list(t) for t in TRANSFER_ORDER[0]])
    base = finding.get("base_model_on_eval_env", {}).get("w4-o6-q8")
    start = (direct.get("before") or {}).get(home) or (simple.get("before") or {}).get(home)
    for role, stats in (("direct-on-harder", direct["success"].get(home)),
                        ("simple-on-harder", simple["success"].get(home)), ("start-on-harder", start)):  # fmt: skip
        value = paper.get(TRANSFER_ROLES[role]) if TRANSFER_ROLES[role] else base
        made = _arm(role, stats, home, value, f"stands for the paper's {TRANSFER_ROLES[role] or 'base model'}")
        if made is not None:
            g.arms[role] = made
    g.order = [[a for a in tier if a in g.arms] for tier in g.order if any(a in g.arms for a in tier)]
    return [g] if len(g.arms) > 1 else []


def difference(a: Arm, b: Arm) -> tuple[float, float, float, bool]:
    """a's success minus b's with a 95% interval, and whether it is paired: over the same test tasks (both arms'
    outcomes known, on the same tasks and seeds), paired task by task (Agresti-Min, only the tasks that one arm solved
    and the other did not decide); else an Agresti-Caffo interval for two independent proportions."""
    from agentenv.rollout import difference_interval, paired_by_task

    if a.outcomes is not None and b.outcomes is not None and a.outcomes.keys() == b.outcomes.keys():
        paired = paired_by_task(a.outcomes, b.outcomes)
        if paired is not None:
            return paired["difference"], paired["low"], paired["high"], True
    return (*difference_interval(a.successes, a.episodes, b.successes, b.episodes), False)


def compare(group: Group) -> list[dict[str, Any]]:
    """Every pair the paper orders within ``group``: expected ``>`` across tiers, ``≈`` within a tier."""
    pairs = []
    for i, tier in enumerate(group.order):
        for a_i, a in enumerate(tier):
            for b in tier[a_i + 1 :]:
                pairs.append(_pair(group, a, b, "≈"))
            for lower in group.order[i + 1 :]:
                for b in lower:
                    pairs.append(_pair(group, a, b, ">"))
    return pairs


def _pair(group: Group, a: str, b: str, expected: str) -> dict[str, Any]:
    diff, low, high, paired = difference(group.arms[a], group.arms[b])
    if expected == ">":
        outcome = ("holds" if low > 0 else "opposite" if high < 0 else
                   "same direction, within noise" if diff > 0 else "no difference" if diff == 0 else
                   "reversed, within noise")  # fmt: skip
    else:
        outcome = "holds" if low <= 0 <= high else "differs"
    return {"within": group.within, "a": a, "b": b, "expected": expected, "diff": diff, "ci_low": low,
            "ci_high": high, "paired": paired, "outcome": outcome}  # fmt: skip


def verdict(pairs: list[dict[str, Any]]) -> tuple[str, str]:
    """(verdict, why) over all pairs of a finding."""
    ranked = [p for p in pairs if p["expected"] == ">"]
    if not ranked:
        return "not run", "no pair of the paper's arms was measured"
    if any(p["outcome"] == "opposite" for p in ranked):
        bad = [f"{p['a']} < {p['b']}" for p in ranked if p["outcome"] == "opposite"]
        return "opposite", "reversed beyond noise: " + ", ".join(bad)
    if all(p["outcome"] == "holds" for p in ranked) and all(p["outcome"] == "holds" for p in pairs):
        return "reproduced", f"all {len(ranked)} ranked pairs hold with 95% intervals above 0"
    same = sum(p["diff"] > 0 for p in ranked)
    held = sum(p["outcome"] == "holds" for p in ranked)
    why = f"{same} of {len(ranked)} ranked pairs go the paper's way, {held} beyond noise"
    return "not at this scale", why + ("; the paper's ordering of point estimates holds" if same == len(ranked) else "")


def build_report(run_dir: str | Path, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every finding: the paper's claim and numbers, our grid's arms, the pairs and the verdict."""
    data = data or paper_data()
    grids = find_grids(run_dir)
    out = []
    for name in FINDINGS:
        finding = data["findings"][name]
        entry = {"finding": name, "claim": finding["claim"], "source": finding["source"],
                 "setting": finding.get("setting", ""), "metric": finding.get("metric", ""),
                 "note": finding.get("note", "")}  # fmt: skip
        summary = grids.get(name)
        if summary is None:
            out.append({**entry, "verdict": "not run", "why": "no grid.json under the folder names this finding"})
            continue
        groups = our_arms(name, summary, finding)
        pairs = [dict(p, within=g.within) for g in groups for p in compare(g)]
        v, why = verdict(pairs)
        seeds = sorted({c["seed"] for c in summary["cells"]})
        arms = [dict({k: v for k, v in vars(a).items() if k != "outcomes"}, within=g.within, rate=a.rate,
                     ci=a.interval()) for g in groups for a in g.arms.values()]  # fmt: skip
        out.append({**entry, "verdict": v, "why": why, "grid": summary["name"], "grid_path": summary.get("path"),
                    "model": summary["model"], "envs": summary["envs"], "seeds": seeds, "arms": arms,
                    "pairs": pairs, "failed": len(summary.get("failed", []))})  # fmt: skip
    return {"paper": data["paper"], "run_dir": str(run_dir), "findings": out}
