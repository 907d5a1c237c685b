"""The demo on a busy machine: ``agentenv demo`` alone, then beside one CPU-bound process, in one run.

The demo recipe states its time on a 2-core machine (``STATED_MINUTES``, with the TextWorld games already built);
the goal is to finish within 1.5x of it while another process keeps one core busy (a browser, a build, a second
job). Baseline: the same demo on the same machine with nothing else running, measured in the same run. The demo
chooses its torch threads from the cores left free at start (1-minute load), so the competitor starts
``--settle`` seconds before the demo (a user's other work has been running for a while, too).

Reports wall seconds, the thread count the demo chose, and before/after success for both runs, and the ratios
contended/quiet and contended/stated. The games are built first (not timed), as on a second run of ``make demo``.

Usage: python benchmarks/demo_contention.py [--settle 75] [--skip-quiet] [--out runs/bench-demo]
(writes benchmarks/results/demo_contention.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from agentenv.recipes.cli import DEMO_MINUTES

RESULTS = Path(__file__).parent / "results" / "demo_contention.json"
STATED_MINUTES = float(DEMO_MINUTES)  # what `agentenv demo` prints: 2 free cores, the games already built
GOAL = 1.5
AGENTENV = str(Path(sys.executable).parent / "agentenv")


def busy_process() -> subprocess.Popen:
    """One CPU-bound competitor: a pure-Python loop (one core)."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])


def run_demo(folder: Path) -> dict:
    if folder.exists():
        shutil.rmtree(folder)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    proc = subprocess.run([AGENTENV, "demo", "-o", str(folder)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"agentenv demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((folder / "results.json").read_text())
    threads = re.search(r"torch threads: (\d+)", proc.stdout)
    evaluations = {label: round(s["success_rate"], 4) for label, s in results["evaluations"].items()}
    return {"seconds": seconds, "minutes": seconds / 60, "threads": int(threads.group(1)) if threads else None,
            "thread_line": next((line for line in proc.stdout.splitlines() if "torch threads" in line), None),
            "stages": results["seconds"], "success": evaluations}  # fmt: skip


def build_games() -> None:
    """The demo's train and test games, built before anything is timed."""
    from agentenv.recipes.config import load_recipe, packaged_recipe

    recipe = load_recipe(packaged_recipe("demo"))
    subprocess.run([AGENTENV, "prepare", recipe.env.id, "--split", "test", "-n", str(recipe.eval.episodes)],
                   check=False, capture_output=True)  # fmt: skip
    subprocess.run([AGENTENV, "prepare", recipe.env.id, "--split", "train", "-n", str(recipe.rl.train_tasks)],
                   check=False, capture_output=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=75.0, help="seconds between starting the competitor and "
                        "the demo (the 1-minute load average catches up)")  # fmt: skip
    parser.add_argument("--skip-quiet", action="store_true", help="keep the quiet run of an earlier result")
    parser.add_argument("--out", default="runs/bench-demo")
    args = parser.parse_args()
    out = Path(args.out)
    build_games()
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    quiet = previous.get("quiet") if args.skip_quiet else None
    if quiet is None:
        print(f"quiet run (load {os.getloadavg()[0]:.1f}) ...", flush=True)
        quiet = run_demo(out / "quiet")
        quiet["load_before"] = os.getloadavg()[0]
    competitor = busy_process()
    try:
        time.sleep(args.settle)
        load = os.getloadavg()[0]
        print(f"beside a CPU-bound process (load {load:.1f}) ...", flush=True)
        contended = run_demo(out / "contended")
        contended["load_before"] = load
    finally:
        competitor.kill()
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "stated_minutes": STATED_MINUTES,
        "goal": f"contended <= {GOAL}x the stated time",
        "quiet": quiet,
        "contended": contended,
        "ratio_contended_to_quiet": contended["seconds"] / quiet["seconds"],
        "ratio_contended_to_stated": contended["minutes"] / STATED_MINUTES,
        "ratio_quiet_to_stated": quiet["minutes"] / STATED_MINUTES,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report["meets_goal"] = report["ratio_contended_to_stated"] <= GOAL
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'run':<12} {'threads':>7} {'minutes':>8} {'vs quiet':>9} {'vs stated':>10}  success before/SFT/after")
    for name, r in (("quiet", quiet), ("contended", contended)):
        s = r["success"]
        success = f"{s.get('before')}/{s.get('after SFT')}/{s.get('after')}"
        print(f"{name:<12} {r['threads']!s:>7} {r['minutes']:8.1f} {r['seconds'] / quiet['seconds']:8.2f}x "
              f"{r['minutes'] / STATED_MINUTES:9.2f}x  {success}")  # fmt: skip
    print(f"goal: contended within {GOAL}x of the stated {STATED_MINUTES:g} minutes: "
          f"{'met' if report['meets_goal'] else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
