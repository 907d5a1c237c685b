"""Self-play on the simplest game, measured: does RL against its own past weights raise the default model's win rate
against the random player?

Runs the packaged recipe ``recipes/selfplay-nim.yaml`` (Nim, 2 heaps of 1-3, the default small model at
``--threads`` torch threads): greedy evaluations against the scripted random and expert players before training,
after the SFT warm start on the expert's moves (the baseline RL starts from, measured in the same run) and after
self-play GRPO, each over ``--games`` games with seats alternating and 95% Wilson intervals; the learner's win rate
in its training games each iteration; an Elo table over every player; the seconds each stage took.

For scale: the random player wins half its games against itself (seats alternate), and the expert (Bouton's
strategy) wins every game it can against any player. A rise is "measurable" when the 95% interval of the difference
(after RL minus after SFT, Agresti-Caffo, as in ``agentenv report``) lies above 0 (``significant``); whether the two
Wilson intervals are disjoint, a far stricter check, is reported as well.

Usage: python benchmarks/selfplay_nim.py [--threads 1] [--iterations 8] [--games 64] [--before]
       [--out runs/selfplay-nim-bench] [--result selfplay_nim] [-s section.field=value ...]
       (writes benchmarks/results/<result>.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=None, help="rl.iterations (default: the recipe's)")
    parser.add_argument("--games", type=int, default=None, help="eval.episodes (default: the recipe's)")
    parser.add_argument("--out", default="runs/selfplay-nim-bench")
    parser.add_argument("--before", action="store_true", help="also evaluate the untrained model (slow: it only "
                        "writes illegal moves, three a game)")  # fmt: skip
    parser.add_argument("--result", default="selfplay_nim", help="name of the JSON under benchmarks/results/")
    parser.add_argument("-s", "--set", action="append", default=[], help="recipe override, e.g. rl.lr=2e-5")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from rich.console import Console

    from agentenv.recipes.config import load_recipe, packaged_recipe
    from agentenv.recipes.run import run_recipe

    overrides = [f"model.num_threads={args.threads}", f"output.dir={args.out}", f"eval.before={args.before}"]
    overrides += args.set
    if args.iterations is not None:
        overrides.append(f"rl.iterations={args.iterations}")
    if args.games is not None:
        overrides.append(f"eval.episodes={args.games}")
    recipe = load_recipe(packaged_recipe("selfplay-nim"), overrides)
    if Path(args.out).exists():
        shutil.rmtree(args.out)
    started = time.perf_counter()
    results = run_recipe(recipe, console=Console())
    seconds = time.perf_counter() - started
    rl = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    rl = [row for row in rl if row.get("stage") == "rl"]
    report = summarize(recipe, results, rl, seconds, args.threads)
    report["moves"] = {path.stem: move_quality(path) for path in sorted((Path(args.out) / "eval").glob("*.jsonl"))}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.result}.json").write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)


def summarize(recipe, results: dict, rl: list[dict], seconds: float, threads: int) -> dict:
    from agentenv.rollout import difference_interval

    keep = ("games", "wins", "draws", "losses", "errors", "win_rate", "win_ci_low", "win_ci_high", "draw_rate",
            "loss_rate", "invalid_rate", "mean_outcome")  # fmt: skip
    evaluations = {label: {k: s[k] for k in keep} for label, s in results["evaluations"].items()}
    baseline, after = evaluations.get("after SFT vs random"), evaluations.get("after vs random")
    rise = None
    if baseline and after:
        _, low, high = difference_interval(after["wins"], after["games"], baseline["wins"], baseline["games"])
        rise = {
            "baseline": "after SFT vs random (the weights RL starts from, measured in this run)",
            "win_rate_change": after["win_rate"] - baseline["win_rate"],
            "ratio": after["win_rate"] / baseline["win_rate"] if baseline["win_rate"] else None,
            "difference_ci": [low, high],
            "significant": low > 0,
            "intervals_disjoint": after["win_ci_low"] > baseline["win_ci_high"],
        }
    columns = ("step", "win_rate_all", "win_rate_random", "win_rate_pool", "games_random", "games_pool",
               "invalid_rate", "mean_return", "seconds", "pool")  # fmt: skip
    per_iteration = [{k: row.get(k) for k in columns} for row in rl]
    return {
        "recipe": recipe.to_dict(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": threads},
        "evaluations": evaluations,
        "rise_vs_random": rise,
        "training": per_iteration,
        "elo": results.get("elo", {}),
        "seconds": {**results.get("seconds", {}), "benchmark total": seconds},
    }


HEAPS = re.compile(r"Heaps: ((?:heap \d+: \d+(?:, )?)+)")
MOVE = re.compile(r"^\s*take (\d+) from heap (\d+)\s*$", re.IGNORECASE)


def move_quality(path: Path) -> dict:
    """What the model played in one evaluation's games (``eval/*.jsonl``), move by move: how often a move from a
    winning position (nim-sum != 0) was a winning one (leaves nim-sum 0), how many moves were illegal, and the most
    common move in each position — what a win rate against the random player hides (its blunders win games too)."""
    from agentenv.envs.games.nim import nim_sum

    table: dict[str, Counter] = defaultdict(Counter)
    winning = optimal = illegal = total = 0
    for line in path.read_text().splitlines():
        for trajectory in json.loads(line)["trajectories"].values():
            if trajectory["policy"] != "model":
                continue
            observation = trajectory["first_observation"]
            for turn in trajectory["turns"]:
                found = HEAPS.findall(observation)
                observation = turn["observation"]
                if not found:
                    continue
                heaps = [int(h.split(": ")[1]) for h in found[-1].split(", ")]
                action, move = turn["action"].strip(), MOVE.match(turn["action"])
                table[",".join(map(str, heaps))][action[:40]] += 1
                total += 1
                legal = not turn["invalid_action"] and move  # the game's own verdict on the move
                illegal += bool(turn["invalid_action"])
                if nim_sum(heaps):
                    winning += 1
                    if legal:
                        heaps[int(move[2]) - 1] -= int(move[1])
                        optimal += nim_sum(heaps) == 0
    return {"moves": total, "illegal": illegal, "moves_from_winning_positions": winning,
            "winning_moves": optimal, "winning_move_rate": optimal / winning if winning else None,
            "most_common": {state: moves.most_common(3) for state, moves in sorted(table.items())}}  # fmt: skip


def print_table(report: dict) -> None:
    print(f"{'evaluation':<26}{'games':>6}  {'win rate [95% CI]':<24}{'invalid':>8}")
    for label, s in report["evaluations"].items():
        ci = f"{s['win_rate']:.3f} [{s['win_ci_low']:.3f}, {s['win_ci_high']:.3f}]"
        print(f"{label:<26}{s['games']:>6}  {ci:<24}{s['invalid_rate']:>8.3f}")
    rise = report["rise_vs_random"]
    if rise:
        ratio = f"{rise['ratio']:.2f}x" if rise["ratio"] is not None else "-"
        low, high = rise["difference_ci"]
        print(f"after RL vs random against the baseline ({rise['baseline']}): {rise['win_rate_change']:+.3f} "
              f"[{low:+.3f}, {high:+.3f}], {ratio}, significant: {rise['significant']}")  # fmt: skip
    for label, m in report.get("moves", {}).items():
        rate = m["winning_move_rate"]
        print(
            f"{label}: {m['winning_moves']}/{m['moves_from_winning_positions']} winning moves from winning "
            f"positions ({rate if rate is None else round(rate, 3)}), {m['illegal']}/{m['moves']} illegal"
        )
    print("training win rate by iteration:", [round(r["win_rate_all"] or 0, 3) for r in report["training"]])
    print("Elo:", {k: round(v) for k, v in report["elo"].items()})
    print(f"total {report['seconds']['benchmark total']:.0f}s")


if __name__ == "__main__":
    main()
