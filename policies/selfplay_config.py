"""The self-play trainer's configuration, importing no torch: a recipe validates without loading the training stack."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.policies.rl_config import check_finite

#: How a game's opponent is drawn from the pool of frozen snapshots: ``linear`` weights the k-th oldest of n
#: snapshots k (the newest n), ``uniform`` weighs them alike, ``latest`` always takes the newest.
RECENCY = ("linear", "uniform", "latest")
#: The fixed opponents a self-play run is evaluated against (the game's scripted players).
EVAL_OPPONENTS = ("random", "expert")


@dataclass
class SelfPlayConfig:
    """A self-play recipe's ``selfplay:`` section (:class:`~agentenv.policies.selfplay.SelfPlayTrainer`); the
    ``rl:`` section's knobs still set the update (``episodes`` games an iteration, ``group_size`` games a seed).

    The learner plays one seat of every game (alternating between groups); the opponent is the game's scripted
    random player in a ``random_share`` of the groups, otherwise a frozen snapshot of the learner's past weights:
    one is taken before the first iteration and every ``pool_every`` iterations after, the ``pool_size`` newest kept.
    """

    pool_size: int = 2  # frozen snapshots kept (each one copy of the weights, in bfloat16)
    pool_every: int = 2  # iterations between snapshots
    recency: str = "linear"
    random_share: float = 0.25  # the share of game groups played against the scripted random player
    eval_games: int = 64  # games against each evaluation opponent, seats alternating
    eval_opponents: list[str] = field(default_factory=lambda: list(EVAL_OPPONENTS))
    eval_temperature: float = 0.0  # 0: greedy
    elo_games: int = 16  # games per pair of players in the final round robin (the pool, the final model, scripted)
    # Keep the best weights: 0 keeps the last. Otherwise the weights RL starts from, those after every
    # ``pool_every`` iterations and the last are each played greedily against the random player on ``select_games``
    # games of their own seeds (neither training's nor evaluation's), and training ends on the best of them.
    select_games: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "") -> None:
        p = prefix
        for f in dataclasses.fields(self):
            check_finite(f"{p}{f.name}", getattr(self, f.name))
        check_range(f"{p}pool_size", self.pool_size, 1, 64, integer=True)
        check_range(f"{p}pool_every", self.pool_every, 1, integer=True)
        check_choice(f"{p}recency", self.recency, RECENCY)
        check_range(f"{p}random_share", self.random_share, 0.0, 1.0)
        check_range(f"{p}eval_games", self.eval_games, 1, integer=True)
        check_range(f"{p}eval_temperature", self.eval_temperature, 0.0)
        check_range(f"{p}elo_games", self.elo_games, 0, integer=True)
        check_range(f"{p}select_games", self.select_games, 0, integer=True)
        if len(set(self.eval_opponents)) != len(self.eval_opponents):
            raise ConfigError(f"{p}eval_opponents={self.eval_opponents!r} names an opponent twice")
        for i, name in enumerate(self.eval_opponents):
            check_choice(f"{p}eval_opponents[{i}]", name, EVAL_OPPONENTS)
