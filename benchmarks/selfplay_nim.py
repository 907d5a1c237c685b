"""Self-play on the simplest game, measured: does RL against its own past weights raise the default model's win rate
against the random player?

Runs the packaged recipe ``recipes/selfplay-nim.yaml`` (Nim, 2 heaps of 1-3, the default small model at
``--threads`` torch threads): greedy evaluations against the scripted random and expert players before training,
after the SFT warm start on the expert's moves (the baseline RL starts from, measured in the same run) and after
self-play GRPO, each over ``--games`` games with seats alternating and 95% Wilson intervals; the learner's win rate
in its training games each iteration; an Elo table over every player; the seconds each stage took.

For scale: the random player wins half its games against itself (seats alternate), and the expert (Bouton's strategy)
wins every game it can against any player; against the random player it wins 85.0% of the games on 2 heaps of 1-3
(exact: :func:`ceiling_vs_random`), and no player wins more. A rise is "measurable" when the 95% interval of the
difference (after RL minus after SFT) lies above 0. The two evaluations play the same game seeds from the same seats
against a random player whose moves depend only on the seed, seat and turn, so they are paired game by game:
``rise_vs_random_paired`` (Agresti-Min interval, McNemar's exact p) is the test; ``rise_vs_random`` treats them as
independent samples (Agresti-Caffo), and whether the two Wilson intervals are disjoint is reported as well.
``--reevaluate RUN`` trains nothing: it plays a finished run's SFT checkpoint and final weights again on ``--games``
games (those the run played first, which must replay alike, then new ones) and tests the rise on the new games alone.
``--across NAME ...`` trains nothing either: it reads finished runs' results (``benchmarks/results/<NAME>.json``, one a
training seed) and asks whether the rise holds across seeds: each seed's paired rise, their mean with a t interval
over seeds, and how many seeds rose or fell beyond noise.

Usage: python benchmarks/selfplay_nim.py [--threads 1] [--iterations 8] [--games 64] [--before]
       [--out runs/selfplay-nim-bench] [--result selfplay_nim] [-s section.field=value ...]
       python benchmarks/selfplay_nim.py --reevaluate runs/selfplay-nim-bench --games 768 [--first-seed N]
       python benchmarks/selfplay_nim.py --across selfplay_nim_v10 selfplay_nim_v11 ... --result selfplay_nim_seeds
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
    parser.add_argument(
        "--reevaluate",
        metavar="RUN",
        help="train nothing: play a finished run's SFT checkpoint "
        "and final weights against the random player again: --games games from --first-seed",
    )
    parser.add_argument("--first-seed", type=int, default=None, help="with --reevaluate: the first game seed "
                        "(default: the run's own evaluation seeds)")  # fmt: skip
    parser.add_argument("--across", nargs="+", metavar="NAME", help="train nothing: the rise across the training "
                        "seeds of finished runs (benchmarks/results/NAME.json each)")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.across:
        report = across_seeds([json.loads((RESULTS / f"{name}.json").read_text()) for name in args.across],
                              args.across)  # fmt: skip
        (RESULTS / f"{args.result}.json").write_text(json.dumps(report, indent=1) + "\n")
        print_across(report)
        return
    if args.reevaluate:
        report = reevaluate(Path(args.reevaluate), args.games or 256, args.first_seed, args.threads)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.result}.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "moves"}, indent=1))
        return

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
    report["rise_vs_random_paired"] = paired_rise(Path(args.out) / "eval", "after_SFT_vs_random", "after_vs_random")
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
               "invalid_rate", "mean_return", "seconds", "pool", "select_win_rate")  # fmt: skip
    per_iteration = [{k: row.get(k) for k in columns} for row in rl]
    return {
        "recipe": recipe.to_dict(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": threads},
        "evaluations": evaluations,
        "rise_vs_random": rise,
        "training": per_iteration,
        "selection": results.get("selection"),  # the weights kept (selfplay.select_games), None: the last
        "elo": results.get("elo", {}),
        "seconds": {**results.get("seconds", {}), "benchmark total": seconds},
    }


def reevaluate(run: Path, games: int, first_seed: int | None, threads: int) -> dict:
    """Play ``run``'s SFT checkpoint (``checkpoints/sft``: the weights RL started from) and its final weights against
    the random player on ``games`` games from ``first_seed`` (default: the run's own evaluation seeds, whose games
    the new ones must then repeat), as the run's evaluations did (greedy, the same context, seats alternating);
    write them to ``run/reevaluate-<first seed>/`` and compare the two on the same games, paired and unpaired."""
    import agentenv
    from agentenv.multi_rollout import ScriptedSeat, evaluate_games
    from agentenv.policies import Sampling, build_policy
    from agentenv.recipes.selfplay import EVAL_SEED
    from agentenv.rollout import difference_interval

    recipe = json.loads((run / "recipe.json").read_text())
    e, first_seed = recipe["eval"], EVAL_SEED if first_seed is None else first_seed
    folder = run / f"reevaluate-{first_seed}"
    folder.mkdir(exist_ok=True)
    report: dict = {"run": str(run), "games": games, "first_seed": first_seed, "evaluations": {}, "seconds": {}}
    for stage, weights in (("after_SFT", run / "checkpoints" / "sft"), ("after", run / "final")):
        started = time.perf_counter()
        sampling = Sampling(e["max_new_tokens"], e["temperature"], seed=recipe["seed"])
        policy = build_policy(f"model:{weights}", sampling=sampling, batch_size=e["num_envs"], threads=threads)
        policy.name = "model"  # the seat's name in the records, as in the run's own evaluations
        envs = [agentenv.make_multi(recipe["env"]["id"], **recipe["env"]["kwargs"]) for _ in range(e["num_envs"])]
        evaluation = evaluate_games(envs, policy, ScriptedSeat("random", seed=1), games, seed=first_seed,
                                    name="model", opponent_name="random", env_id=recipe["env"]["id"],
                                    max_context_tokens=recipe["rl"]["max_context_tokens"])  # fmt: skip
        path = folder / f"{stage}_vs_random.jsonl"
        path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in evaluation.records))
        report["evaluations"][stage] = {k: v for k, v in evaluation.summary().items() if k not in ("policy",)}
        report["seconds"][stage] = time.perf_counter() - started
    before, after = report["evaluations"]["after_SFT"], report["evaluations"]["after"]
    _, low, high = difference_interval(after["wins"], after["games"], before["wins"], before["games"])
    report["rise_vs_random"] = {"win_rate_change": after["win_rate"] - before["win_rate"], "difference_ci": [low, high],
                                "significant": low > 0}  # fmt: skip
    report["rise_vs_random_paired"] = paired_rise(folder, "after_SFT_vs_random", "after_vs_random")
    own = run / "eval" / "after_vs_random.jsonl"
    report["rise_vs_random_paired_new_games"] = paired_rise(folder, "after_SFT_vs_random", "after_vs_random", own)
    report["repeats_the_run"] = {stage: same_games(run / "eval", folder, f"{stage}_vs_random") for stage in
                                 ("after_SFT", "after")}  # fmt: skip
    report["moves"] = {path.stem: move_quality(path) for path in sorted(folder.glob("*.jsonl"))}
    return report


def same_games(run_eval: Path, again: Path, name: str) -> dict:
    """How many games the run's own evaluation and a re-evaluation both played (the same seed and seat) and in how
    many of them the model won or lost alike: a check that the saved weights are the ones the run measured."""
    if not (run_eval / f"{name}.jsonl").exists():
        return {"shared_games": 0}
    first, second = model_wins(run_eval / f"{name}.jsonl"), model_wins(again / f"{name}.jsonl")
    shared = set(first) & set(second)
    return {"shared_games": len(shared), "same_outcome": sum(first[g] == second[g] for g in shared)}


def model_wins(path: Path) -> dict[tuple[int, str], bool]:
    """The games of one evaluation (``eval/*.jsonl``) by (game seed, the model's seat): whether the model won (its
    payoff above the other seat's, as :meth:`GameRecord.score` counts a win). Failed games are left out."""
    from agentenv.multi_rollout import GameRecord

    wins = {}
    for line in path.read_text().splitlines():
        record = GameRecord(**{k: v for k, v in json.loads(line).items() if k != "trajectories"})
        if record.error:
            continue
        seat = next(agent for agent, name in record.seats.items() if not name.startswith("scripted:"))
        wins[(record.seed, seat)] = record.score(seat) == 1.0
    return wins


def paired_rise(folder: Path, before: str, after: str, leave_out: Path | None = None) -> dict | None:
    """The rise from ``before`` to ``after`` (two evaluations in ``folder``) on the games both played: every game
    seed is played from the same seat by both, against a random player whose moves depend only on the seed, seat and
    turn, so the two evaluations are paired game by game and only the games that changed outcome decide
    (:func:`agentenv.rollout.paired_difference_interval`). ``leave_out``: an evaluation whose games are not counted
    (the run's own, so that a re-evaluation's verdict rests on new games only)."""
    from agentenv.rollout import paired_by_task

    if not (folder / f"{before}.jsonl").exists() or not (folder / f"{after}.jsonl").exists():
        return None
    a, b = model_wins(folder / f"{after}.jsonl"), model_wins(folder / f"{before}.jsonl")
    if leave_out and leave_out.exists():
        played = model_wins(leave_out)
        a = {game: won for game, won in a.items() if game not in played}
    paired = paired_by_task(a, b)
    return {"baseline": before, "after": after, **paired, "significant": paired["low"] > 0}


#: Two-sided 95% quantiles of Student's t by degrees of freedom (1..10); more seeds than 11 use the normal 1.96.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def across_seeds(reports: list[dict], names: list[str]) -> dict:
    """Whether RL's rise against the random player holds across training seeds: one row a run (its seed, the recipe
    fields it changed from the first run's, the win rates after SFT and after RL and the paired rise on the same
    games), the mean paired difference over seeds with a 95% t interval (the seeds are the independent samples; the
    games within a seed are not a second source of independent evidence about the recipe), and how many seeds rose
    or fell beyond noise on their own. ``robust``: the t interval lies above 0 and no seed fell significantly."""
    import statistics

    rows = []
    for name, report in zip(names, reports, strict=True):
        paired, ev = report.get("rise_vs_random_paired"), report["evaluations"]
        if not paired:
            raise SystemExit(f"{name}: no paired rise against the random player (an unfinished or older run)")
        rows.append({"result": name, "seed": report["recipe"]["seed"], "rl": report["recipe"]["rl"],
                     "after_SFT": ev["after SFT vs random"]["win_rate"], "after": ev["after vs random"]["win_rate"],
                     **{k: paired[k] for k in ("n", "gained", "lost", "difference", "low", "high", "p")}})  # fmt: skip
    changed = sorted({k for r in rows for k, v in r["rl"].items() if v != rows[0]["rl"][k]})
    if changed:
        raise SystemExit(f"the runs differ in rl.{', rl.'.join(changed)}: compare seeds of one recipe")
    diffs = [r["difference"] for r in rows]
    mean = statistics.fmean(diffs)
    half = None
    if len(diffs) > 1:
        t = T975[len(diffs) - 2] if len(diffs) - 1 <= len(T975) else 1.96
        half = t * statistics.stdev(diffs) / len(diffs) ** 0.5
    rose, fell = sum(r["low"] > 0 for r in rows), sum(r["high"] < 0 for r in rows)
    return {
        "recipe_rl": rows[0]["rl"],
        "ceiling_vs_random": ceiling_vs_random(),
        "seeds": [{k: v for k, v in r.items() if k != "rl"} for r in rows],
        "mean_difference": mean,
        "mean_ci": [mean - half, mean + half] if half is not None else None,
        "seeds_rose": rose,
        "seeds_fell": fell,
        "robust": half is not None and mean - half > 0 and fell == 0,
    }


def ceiling_vs_random(heaps: int = 2, max_heap: int = 3) -> float:
    """The highest win rate any player can reach against the random player (who picks uniformly among the legal
    moves) in Nim on ``heaps`` heaps of 1..``max_heap`` (uniform starts, seats alternating), by exact dynamic
    programming over the game tree: the headroom above a model's win rate."""
    from functools import cache
    from itertools import product

    def moves(h: tuple[int, ...]) -> list[tuple[int, ...]]:
        return [(*h[:i], h[i] - c, *h[i + 1 :]) for i in range(len(h)) for c in range(1, h[i] + 1)]

    @cache
    def best(h: tuple[int, ...]) -> float:  # the best player to move: its chance to win (an empty board: lost)
        return max((1 - chance(m) for m in moves(h)), default=0.0)

    @cache
    def chance(h: tuple[int, ...]) -> float:  # the random player to move, against the best player
        options = moves(h)
        return sum(1 - best(m) for m in options) / len(options) if options else 0.0

    starts = list(product(range(1, max_heap + 1), repeat=heaps))
    return sum(best(h) + 1 - chance(h) for h in starts) / (2 * len(starts))  # half the games first, half second


def print_across(report: dict) -> None:
    print(f"{'seed':>4}  {'after SFT':>9}  {'after RL':>8}  {'gained':>6}  {'lost':>4}  paired rise [95% CI]    p")
    for r in report["seeds"]:
        print(f"{r['seed']:>4}  {r['after_SFT']:>9.3f}  {r['after']:>8.3f}  {r['gained']:>6}  {r['lost']:>4}  "
              f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]  {r['p']:.3g}")  # fmt: skip
    ci = report["mean_ci"]
    ci = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "(one seed: no interval)"
    print(f"mean over {len(report['seeds'])} seeds {report['mean_difference']:+.3f} {ci}; rose beyond noise "
          f"{report['seeds_rose']}, fell {report['seeds_fell']}; robust: {report['robust']} (no player wins more "
          f"than {report['ceiling_vs_random']:.3f} against the random one)")  # fmt: skip


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
    paired = report.get("rise_vs_random_paired")
    if paired:
        print(f"the same games, paired: {paired['gained']} lost before and won after, {paired['lost']} the reverse, "
              f"of {paired['n']}: {paired['difference']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}], "
              f"McNemar p {paired['p']:.3g}, significant: {paired['significant']}")  # fmt: skip
    for label, m in report.get("moves", {}).items():
        rate = m["winning_move_rate"]
        print(
            f"{label}: {m['winning_moves']}/{m['moves_from_winning_positions']} winning moves from winning "
            f"positions ({rate if rate is None else round(rate, 3)}), {m['illegal']}/{m['moves']} illegal"
        )
    print("training win rate by iteration:", [round(r["win_rate_all"] or 0, 3) for r in report["training"]])
    if report.get("selection"):
        kept = report["selection"]
        rates = {c["iteration"]: round(c["win_rate"], 3) for c in kept["candidates"]}
        print(f"kept the weights after iteration {kept['kept']}; selection win rates by iteration: {rates}")
    print("Elo:", {k: round(v) for k, v in report["elo"].items()})
    print(f"total {report['seconds']['benchmark total']:.0f}s")


if __name__ == "__main__":
    main()
