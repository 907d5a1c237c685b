"""Self-play RL on a multi-agent game: the learner against a pool of its own frozen past weights (and a scripted
random player), trained on its own seat's token-exact trajectories with the game's rewards.

One iteration (:meth:`SelfPlayTrainer.collect`, then :class:`~agentenv.policies.rl.RLTrainer`'s score, advantages
and update): a snapshot joins the pool when due; ``episodes`` games are played, ``group_size`` per game seed, and
each group has one learner seat (alternating between groups) and one opponent — the random player in a
``random_share`` of the groups, else a snapshot drawn by recency (:class:`OpponentPool`). Only the learner's
trajectories are returned, so only its seat is trained; the game's own rewards (outcome, invalid-turn penalty) are
its turn rewards, and a GRPO group is games of one seed, one seat and one opponent.

Snapshots are state dicts in bfloat16 (half the memory of a float32 copy), loaded into one shared frozen opponent
model when a group plays against them: the pool costs one model plus ``pool_size`` half-size copies. Checkpoints
hold the pool (:meth:`SelfPlayTrainer.save_extra`), so a resumed run plays the same opponents it would have.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agentenv.errors import ConfigError
from agentenv.multi_rollout import GameRecord, ScriptedSeat, evaluate_games, play_games
from agentenv.policies.local import Sampling, TransformersPolicy
from agentenv.policies.rl import RLConfig, RLTrainer
from agentenv.policies.selfplay_config import SelfPlayConfig

RANDOM = "random"
#: The first game seed of the selection games (``SelfPlayConfig.select_games``): apart from training's seeds
#: (``0..rl.train_tasks-1``) and the recipe's evaluations (from 1,000,000).
SELECT_SEED = 3_000_000


class OpponentPool:
    """Frozen copies of the learner's past weights, oldest first; the ``size`` newest are kept.

    :meth:`draw` picks one by recency (``SelfPlayConfig.recency``): ``linear`` gives the k-th oldest of n weight k,
    so the newest is drawn n times as often as the oldest; ``uniform`` weighs all alike; ``latest`` is the newest.
    """

    def __init__(self, size: int, recency: str = "linear"):
        self.size, self.recency = size, recency
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []  # (iterations done when taken, weights)

    def __len__(self) -> int:
        return len(self.snapshots)

    def add(self, iteration: int, model: Any) -> None:
        """Copy ``model``'s weights (floating tensors in bfloat16, on the CPU) as the snapshot of ``iteration``."""
        weights = {}
        for name, tensor in model.state_dict().items():
            dtype = torch.bfloat16 if tensor.is_floating_point() else tensor.dtype
            weights[name] = tensor.detach().to("cpu", dtype, copy=True)
        self.snapshots.append((iteration, weights))
        del self.snapshots[: -self.size]

    def names(self) -> list[str]:
        return [snapshot_name(it) for it, _ in self.snapshots]

    def weights(self) -> list[float]:
        """The draw weight of each snapshot, oldest first."""
        n = len(self.snapshots)
        if self.recency == "uniform":
            return [1.0] * n
        if self.recency == "latest":
            return [0.0] * (n - 1) + [1.0] if n else []
        return [float(k) for k in range(1, n + 1)]

    def draw(self, rng: random.Random) -> int:
        """The index of a snapshot drawn by recency."""
        if not self.snapshots:
            raise ConfigError("the opponent pool is empty: add a snapshot before drawing one")
        return rng.choices(range(len(self.snapshots)), weights=self.weights())[0]


def snapshot_name(iteration: int) -> str:
    return f"iteration {iteration}"


class SelfPlayTrainer(RLTrainer):
    """:class:`~agentenv.policies.rl.RLTrainer` on games: ``games`` are PettingZoo AEC envs of one game
    (``agentenv.make_multi`` x ``num_envs``) played ``num_envs`` at a time; ``config`` sets the update, ``selfplay``
    the pool. One process, the trained model generating (no accelerator or separate engine yet)."""

    def __init__(
        self,
        config: RLConfig,
        selfplay: SelfPlayConfig,
        model: Any,
        tokenizer: Any,
        games: list[Any],
        chat_format: Any,
        *,
        seed: int = 0,
        env_id: str = "",
    ):
        if not games or not hasattr(games[0], "agent_iter"):
            raise ConfigError("SelfPlayTrainer plays multi-agent games: give envs made by agentenv.make_multi")
        super().__init__(config, model, tokenizer, games, chat_format, seed=seed, env_id=env_id)
        self.selfplay = selfplay
        self.agents = list(games[0].possible_agents)
        self.pool = OpponentPool(selfplay.pool_size, selfplay.recency)
        self.opponent_model = copy.deepcopy(model).eval().requires_grad_(False)
        # Prefix caches sized to one conversation a game (the default, 65536 slots, is ~3 GB for a 135M model)
        cache = len(games) * config.max_context_tokens
        self.opponent = TransformersPolicy(
            self.opponent_model, tokenizer, batch_size=len(games), cache_max_tokens=cache
        )
        if isinstance(self.policy, TransformersPolicy):
            self.policy.cache_max_tokens = min(self.policy.cache_max_tokens, cache)
        self.loaded: int | None = None  # the iteration of the snapshot now in the opponent model
        self.last_games: list[tuple[GameRecord, str, str]] = []  # the last iteration's (game, learner seat, opponent)
        self.selection: list[dict[str, Any]] = []  # each candidate's iteration and win rate in the selection games
        self.best: tuple[int, dict[str, torch.Tensor]] | None = None  # the best candidate: its iteration, weights

    def plan(self, iteration: int) -> list[tuple[int, str, str | int]]:
        """Each game of ``iteration``: (seed, the learner's seat, ``"random"`` or the index of a pool snapshot)."""
        c, s = self.config, self.selfplay
        rng = random.Random(f"selfplay/{self.seed}/{iteration}")
        seeds = self.task_seeds(iteration)
        games: list[tuple[int, str, str | int]] = []
        for g, start in enumerate(range(0, len(seeds), c.group_size)):
            seat = self.agents[(iteration + g) % len(self.agents)]
            opponent: str | int = RANDOM if not self.pool or rng.random() < s.random_share else self.pool.draw(rng)
            games += [(seed, seat, opponent) for seed in seeds[start : start + c.group_size]]
        return games

    def snapshot_due(self, iteration: int) -> None:
        """A snapshot of the current weights joins the pool before iterations 0, pool_every, 2 pool_every, ..."""
        taken = self.pool.snapshots[-1][0] if self.pool else None
        if iteration % self.selfplay.pool_every == 0 and taken != iteration:
            self.pool.add(iteration, self.model)

    def load_opponent(self, index: int) -> TransformersPolicy:
        """The shared opponent model, holding pool snapshot ``index``."""
        iteration, weights = self.pool.snapshots[index]
        if self.loaded != iteration:
            self.opponent_model.load_state_dict(weights)
            self.opponent.clear_cache()
            self.loaded = iteration
        self.opponent.name = snapshot_name(iteration)
        return self.opponent

    def collect(self, iteration: int, on_episode: Any = None) -> list[Any]:
        """The learner's trajectories of this iteration's games, in the order of :meth:`plan` (see the module doc)."""
        c = self.config
        self.snapshot_due(iteration)
        sampling = Sampling(c.max_new_tokens, c.temperature, c.top_p, seed=self.seed * 1_000_003 + iteration)
        plan = self.plan(iteration)
        by_opponent: dict[str | int, list[int]] = {}
        for i, (_, _, opponent) in enumerate(plan):
            by_opponent.setdefault(opponent, []).append(i)
        rng = random.Random(f"selfplay-random/{self.seed}/{iteration}")
        players = {g: ScriptedSeat(RANDOM, seed=rng.randrange(2**31)) for g in range(0, len(plan), c.group_size)}
        self.model.eval()
        records: list[Any] = [None] * len(plan)
        for opponent, indices in by_opponent.items():
            seatings = []
            for i in indices:
                other = self.load_opponent(opponent) if opponent != RANDOM else players[i - i % c.group_size]
                seatings.append({a: self.policy if a == plan[i][1] else other for a in self.agents})

            games = play_games(self.envs, seatings, [plan[i][0] for i in indices], chat_format=self.chat_format,
                               sampling=sampling, max_context_tokens=c.max_context_tokens, env_id=self.env_id,
                               on_game=getattr(on_episode, "episode", on_episode))  # fmt: skip
            for i, record in zip(indices, games, strict=True):
                records[i] = record
        self.last_games = [(r, seat, self.opponent_label(o)) for r, (_, seat, o) in zip(records, plan, strict=True)]
        return [record.trajectories[seat] for record, (_, seat, _) in zip(records, plan, strict=True)]

    def opponent_label(self, opponent: str | int) -> str:
        return RANDOM if opponent == RANDOM else snapshot_name(self.pool.snapshots[int(opponent)][0])

    def iteration(self, on_episode: Any = None) -> dict[str, Any]:
        """RLTrainer's iteration, with the learner's win rate in its games against each kind of opponent (and in
        the selection games, when they are due: see :meth:`consider`)."""
        s = self.selfplay
        if s.select_games and not self.selection:
            self.consider()  # the weights RL starts from
        metrics = super().iteration(on_episode)
        done = self.iteration_done
        if s.select_games and (done % s.pool_every == 0 or done == self.config.iterations):
            metrics["select_win_rate"] = self.consider()
        scores: dict[str, list[float]] = {}
        for record, seat, opponent in self.last_games:
            if not record.error:
                kind = RANDOM if opponent == RANDOM else "pool"
                scores.setdefault(kind, []).append(record.score(seat))
                scores.setdefault("all", []).append(record.score(seat))
        for kind, values in scores.items():
            metrics[f"win_rate_{kind}"] = sum(v == 1.0 for v in values) / len(values)
            metrics[f"games_{kind}"] = len(values)
        metrics["pool"] = self.pool.names()
        return metrics

    # ---- keeping the best weights ----------------------------------------------------------------------------------
    def consider(self) -> float:
        """Play the current weights greedily against the random player on ``select_games`` selection games (seeds
        from :data:`SELECT_SEED`, seats alternating) and keep a copy of them if they win at least as often as the
        best so far (a tie goes to the later, more trained weights). Returns their win rate."""
        s = self.selfplay
        self.model.eval()
        evaluation = evaluate_games(self.envs, self.policy, ScriptedSeat(RANDOM, seed=2), s.select_games,
                                    seed=SELECT_SEED, name=f"iteration {self.iteration_done}", opponent_name=RANDOM,
                                    **self._play(0.0))  # fmt: skip
        if isinstance(self.policy, TransformersPolicy):
            self.policy.clear_cache()  # training continues from the state it would have had
        rate = float(evaluation.summary()["win_rate"])
        self.selection.append({"iteration": self.iteration_done, "win_rate": rate})
        if self.best is None or rate >= max(c["win_rate"] for c in self.selection[:-1]):
            weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best = (self.iteration_done, weights)
        return rate

    def keep_best(self) -> dict[str, Any] | None:
        """After the last iteration: load the best candidate's weights into the model (None when ``select_games``
        is 0). Returns the candidates' win rates and the iteration kept."""
        if self.best is None:
            return None
        iteration, weights = self.best
        if iteration != self.iteration_done:
            self.model.load_state_dict(weights)
            if isinstance(self.policy, TransformersPolicy):
                self.policy.clear_cache()
        rate = next(c["win_rate"] for c in reversed(self.selection) if c["iteration"] == iteration)
        return {"games": self.selfplay.select_games, "first_seed": SELECT_SEED, "candidates": self.selection,
                "kept": iteration, "win_rate": rate}  # fmt: skip

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def save_extra(self, folder: Path) -> None:
        """The opponent pool, in the checkpoint: ``pool/<iteration>.safetensors`` (bfloat16) and ``pool/pool.json``
        (their order), so that a resumed run draws from the same snapshots."""
        from safetensors.torch import save_file

        pool = folder / "pool"
        pool.mkdir()
        for iteration, weights in self.pool.snapshots:
            save_file({k: v.contiguous() for k, v in weights.items()}, str(pool / f"{iteration}.safetensors"))
        (pool / "pool.json").write_text(json.dumps({"iterations": [it for it, _ in self.pool.snapshots]}))
        if self.best is not None:  # the selection so far, and the best weights (float32, as trained)
            save_file({k: v.contiguous() for k, v in self.best[1].items()}, str(folder / "best.safetensors"))
            (folder / "selection.json").write_text(json.dumps({"candidates": self.selection, "best": self.best[0]}))

    def load_extra(self, folder: Path) -> None:
        from safetensors.torch import load_file

        pool = folder / "pool"
        if not (pool / "pool.json").is_file():
            raise ConfigError(f"{folder} holds no opponent pool: it was not written by a self-play run")
        iterations = json.loads((pool / "pool.json").read_text())["iterations"]
        self.pool.snapshots = [(int(it), load_file(str(pool / f"{it}.safetensors"))) for it in iterations]
        self.loaded = None  # the opponent model holds no snapshot yet
        if (folder / "selection.json").is_file():
            selection = json.loads((folder / "selection.json").read_text())
            self.selection = selection["candidates"]
            self.best = (int(selection["best"]), load_file(str(folder / "best.safetensors")))

    # ---- evaluation ---------------------------------------------------------------------------------------------
    def league(self, games: int, *, learner: str = "learner", opponents: Sequence[str] = (RANDOM, "expert"),
               temperature: float = 0.0, seed: int = 0) -> list[tuple[str, str, float]]:  # fmt: skip
        """A round robin for :func:`~agentenv.multi_rollout.elo_ratings`: the learner against every pool snapshot,
        and every snapshot against each scripted ``opponents``, ``games`` games a pair; rows of ``(a, b, a's
        score)``. (Snapshots do not meet each other: one opponent model is loaded at a time.)"""
        if games == 0:
            return []
        rows: list[tuple[str, str, float]] = []
        self.model.eval()
        for index in range(len(self.pool)):
            snapshot = self.load_opponent(index)
            name = snapshot.name
            rows += evaluate_games(self.envs, self.policy, snapshot, games, seed=seed, name=learner,
                                   opponent_name=name, **self._play(temperature)).results()  # fmt: skip
            for scripted in opponents:
                player = ScriptedSeat(scripted, seed=1)
                rows += evaluate_games(self.envs, snapshot, player, games, seed=seed, name=name,
                                       opponent_name=scripted, **self._play(temperature)).results()  # fmt: skip
        return rows

    def _play(self, temperature: float) -> dict[str, Any]:
        c = self.config
        sampling = Sampling(c.max_new_tokens, temperature, seed=self.seed)
        return {"chat_format": self.chat_format, "sampling": sampling, "max_context_tokens": c.max_context_tokens,
                "env_id": self.env_id}  # fmt: skip


def expert_demonstrations(games: Sequence[Any], episodes: int, seed: int = 0, opponent: str = RANDOM) -> list[list]:
    """SFT chats for a game: the game's expert playing ``episodes`` games against ``opponent`` (seats alternating,
    game seeds ``seed``..), each game as the expert's own conversation (system, the game's messages, its moves)."""
    expert = ScriptedSeat("expert", seed=seed)
    evaluation = evaluate_games(list(games), expert, ScriptedSeat(opponent, seed=seed + 1), episodes, seed=seed)
    return [
        record.trajectories[seat].messages()
        for record, seat in zip(evaluation.records, evaluation.policy_seats, strict=True)
        if not record.error and record.trajectories[seat].turns
    ]
