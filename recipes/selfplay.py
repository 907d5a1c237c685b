"""The self-play parts of a recipe run (a ``selfplay:`` section; ``env.id`` a multi-agent game): evaluations against
the game's scripted players, expert demonstrations for SFT, the trainer, and the Elo table at the end.

Evaluations play ``eval.episodes`` games against each of ``selfplay.eval_opponents``, seats alternating, on game
seeds from :data:`EVAL_SEED` (training draws from ``0..rl.train_tasks-1``); each is recorded as ``<stage> vs
<opponent>`` with win / draw / loss rates and 95% Wilson intervals, and, so that the report and the summary lines of
single-agent runs read it alike, ``success_rate`` (a win) with its interval, ``episodes`` (games),
``mean_return`` (the mean outcome) and ``mean_turns`` (the policy's own turns a game); ``outcomes`` holds each
game's win by ``"<seed>/<seat>"``, and ``results["rises"]`` RL's change in win rate over the SFT start against each
opponent, paired game by game.
"""

from __future__ import annotations

import time
from typing import Any

#: The first game seed of evaluations: far from the training seeds.
EVAL_SEED = 1_000_000


def make_games(recipe: Any, n: int) -> list[Any]:
    import agentenv

    return [agentenv.make_multi(recipe.env.id, **recipe.env.kwargs) for _ in range(max(1, n))]


def evaluate_game_stage(run: Any, stage: str) -> None:
    """The model's games against each evaluation opponent (those a resumed run has not finished)."""
    from agentenv.multi_rollout import ScriptedSeat, evaluate_games
    from agentenv.policies.local import Sampling, TransformersPolicy

    recipe = run.recipe
    e, s = recipe.eval, recipe.selfplay
    games = make_games(recipe, e.num_envs)
    cache = len(games) * recipe.rl.max_context_tokens  # one conversation a game
    policy = TransformersPolicy(run.model, run.tokenizer, batch_size=len(games), cache_max_tokens=cache)
    sampling = Sampling(e.max_new_tokens, e.temperature, seed=recipe.seed)
    run.model.eval()
    for opponent in s.eval_opponents:
        label = f"{stage} vs {opponent}"
        if label in run.results["evaluations"]:
            continue
        t0 = time.perf_counter()
        evaluation = evaluate_games(
            games, policy, ScriptedSeat(opponent, seed=1), e.episodes, seed=EVAL_SEED, name=stage,
            opponent_name=opponent, chat_format=run.chat_format, sampling=sampling,
            max_context_tokens=recipe.rl.max_context_tokens, env_id=recipe.env.id,
        )  # fmt: skip
        record_evaluation(run, label, evaluation, time.perf_counter() - t0)
    for game in games:
        game.close()


def record_evaluation(run: Any, label: str, evaluation: Any, seconds: float) -> None:
    """An evaluation's summary into ``results.json`` (and its games' rows, for the Elo table), the log and the
    console; its games into ``eval/<label>.jsonl``."""
    import json

    summary = evaluation.summary()
    played = [r.trajectories[seat] for r, seat in zip(evaluation.records, evaluation.policy_seats, strict=True)]
    summary["mean_turns"] = sum(len(t.turns) for t in played) / max(1, len(played))  # the policy's own turns
    summary.update(env_id=run.recipe.env.id, episodes=summary["games"], mean_return=summary["mean_outcome"],
                   success_rate=summary["win_rate"], success_ci_low=summary["win_ci_low"],
                   success_ci_high=summary["win_ci_high"])  # fmt: skip
    outcomes = {f"{r.seed}/{seat}": r.score(seat) == 1.0 for r, seat in zip(evaluation.records,
                evaluation.policy_seats, strict=True) if not r.error}  # fmt: skip
    run.results["evaluations"][label] = {**summary, "outcomes": outcomes}  # won, by game seed and the policy's seat
    run.results.setdefault("game_results", {})[label] = evaluation.results()
    run.results["seconds"][f"eval {label}"] = seconds
    if run.main:
        path = run.out / "eval" / f"{label.replace(' ', '_')}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in evaluation.records))
    run.log.log("eval", 0, {"label": label, **summary})
    run.say(f"  {label}: win {summary['win_rate']:.1%} [{summary['win_ci_low']:.0%}, {summary['win_ci_high']:.0%}]"
            f", draw {summary['draw_rate']:.1%}, loss {summary['loss_rate']:.1%} in {summary['games']} games, "
            f"invalid turns {summary['invalid_rate']:.0%}")  # fmt: skip
    record_rise(run, label)
    run.save_results()


def record_rise(run: Any, label: str) -> None:
    """After RL's evaluation against an opponent, its change in win rate over the after-SFT one, paired game by game:
    both play the same game seeds from the same seats, and a scripted opponent's moves depend only on the seed, seat
    and turn, so only the games whose outcome changed decide (``results["rises"][opponent]``)."""
    from agentenv.rollout import paired_by_task

    stage, _, opponent = label.partition(" vs ")
    evaluations = run.results["evaluations"]
    if stage != "after" or f"after SFT vs {opponent}" not in evaluations:
        return
    after, before = evaluations[label]["outcomes"], evaluations[f"after SFT vs {opponent}"].get("outcomes") or {}
    rise = paired_by_task(after, before)
    if rise is None:
        return
    run.results.setdefault("rises", {})[opponent] = rise
    run.say(f"  win rate against {opponent}, after RL minus after SFT on the same {rise['n']} games: "
            f"{rise['difference']:+.1%} [{rise['low']:+.1%}, {rise['high']:+.1%}] ({rise['gained']} games won that "
            f"were lost, {rise['lost']} the reverse; McNemar p {rise['p']:.2g})")  # fmt: skip


def demonstrations(recipe: Any) -> list[list[dict[str, Any]]]:
    """SFT chats: the game's expert against its random player on ``sft.episodes`` training seeds."""
    from agentenv.policies.selfplay import expert_demonstrations

    games = make_games(recipe, recipe.eval.num_envs)
    try:
        return expert_demonstrations(games, recipe.sft.episodes, seed=recipe.seed)
    finally:
        for game in games:
            game.close()


def trainer(run: Any) -> tuple[Any, list[Any]]:
    """The :class:`~agentenv.policies.selfplay.SelfPlayTrainer` of the run, and its games (to close at the end)."""
    from agentenv.errors import ConfigError
    from agentenv.policies.selfplay import SelfPlayTrainer

    recipe = run.recipe
    if run.accelerator is not None:
        raise ConfigError("a self-play recipe runs in one process: launch it without accelerate/torchrun")
    games = make_games(recipe, recipe.rl.num_envs)
    return SelfPlayTrainer(recipe.rl, recipe.selfplay, run.model, run.tokenizer, games, run.chat_format,
                           seed=recipe.seed, env_id=recipe.env.id), games  # fmt: skip


def rate_players(run: Any) -> None:
    """The final round robin (the trained model against the pool's snapshots, the snapshots against the scripted
    players) and Elo-scale ratings of every player from it and the evaluations: ``results["elo"]``."""
    from agentenv.multi_rollout import elo_ratings

    recipe, trainer_ = run.recipe, run.trainer
    rows = [row for label, rows in run.results.get("game_results", {}).items() for row in rows]
    if trainer_ is not None and recipe.selfplay.elo_games:
        t0 = time.perf_counter()
        league = trainer_.league(recipe.selfplay.elo_games, learner="after", opponents=recipe.selfplay.eval_opponents,
                                 temperature=recipe.eval.temperature, seed=EVAL_SEED)  # fmt: skip
        run.results["seconds"]["league"] = time.perf_counter() - t0
        run.results["league_results"] = league
        rows += [tuple(r) for r in league]
    if not rows:
        return
    ratings = elo_ratings(tuple(r) for r in rows)
    run.results["elo"] = dict(sorted(ratings.items(), key=lambda kv: -kv[1]))
    run.say("  Elo: " + ", ".join(f"{name} {rating:.0f}" for name, rating in run.results["elo"].items()))
    run.save_results()
