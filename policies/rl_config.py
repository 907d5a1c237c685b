"""The RL trainer's configuration, importing no torch: a recipe validates without loading the training stack."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.policies.estimators import get_estimator


class DivergedError(RuntimeError):
    """Training produced a non-finite loss, gradient norm or weight: it stops at that step, before saving anything."""


def check_finite(field: str, value: object) -> None:
    """NaN passes every range check (it compares false) and inf passes open ones: reject both by name."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{field}={value!r} must be a finite number")


def check_positive(field: str, value: object) -> None:
    """A finite number > 0 (a learning rate of 0 trains nothing; inf or NaN turns every weight into NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{field}={value!r} must be a finite number > 0")
    if value <= 0:
        raise ConfigError(f"{field}={value!r} is out of range; allowed: a finite number > 0")


@dataclass
class RLConfig:
    """The RL stage's knobs (a recipe's ``rl:`` section). ``algorithm`` names a registered advantage estimator
    (:mod:`agentenv.policies.estimators`)."""

    algorithm: str = "ppo"
    iterations: int = 10
    episodes: int = 16  # per iteration
    group_size: int = 4  # episodes per task seed (GRPO/RLOO groups; PPO and REINFORCE++ may use 1)
    train_tasks: int = 1000  # the training pool: task seeds 0..train_tasks-1 of the env's train split
    epochs: int = 1
    minibatches: int = 1
    micro_batch_size: int = 4
    lr: float = 1e-5
    value_lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    clip: float = 0.2
    clip_high: float | None = None  # DAPO clip-higher
    gamma: float = 1.0
    lam: float = 1.0
    vf_coef: float = 0.5
    vf_clip: float | None = 0.2
    whiten_advantages: bool = True  # PPO
    scale_rewards: bool = True  # GRPO: divide by the group std (False = Dr. GRPO)
    ent_coef: float = 0.0
    kl_coef: float = 0.0
    kl_in: str = "reward"  # "reward" (PPO, REINFORCE++) or "loss" (GRPO)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    max_context_tokens: int = 2048
    num_envs: int = 8
    # Truncated importance sampling when a separate engine (vLLM) samples the rollouts: each token's policy-gradient
    # term is weighted by min(pi_trainer / pi_sampler, tis_cap). None: off (the gap is still measured and logged).
    tis_cap: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "") -> None:
        p = prefix
        for f in dataclasses.fields(self):
            check_finite(f"{p}{f.name}", getattr(self, f.name))
        for name in ("lr", "value_lr", "max_grad_norm"):
            check_positive(f"{p}{name}", getattr(self, name))
        estimator = get_estimator(self.algorithm, f"{p}algorithm")
        for name in ("iterations", "episodes", "group_size", "train_tasks", "epochs", "minibatches",
                     "micro_batch_size", "max_new_tokens", "max_context_tokens", "num_envs"):  # fmt: skip
            check_range(f"{p}{name}", getattr(self, name), 1, integer=True)
        for name in ("lr", "value_lr", "weight_decay", "max_grad_norm", "clip", "vf_coef", "ent_coef", "kl_coef",
                     "temperature"):  # fmt: skip
            check_range(f"{p}{name}", getattr(self, name), 0.0)
        for name in ("gamma", "lam", "top_p"):
            check_range(f"{p}{name}", getattr(self, name), 0.0, 1.0)
        for name in ("clip_high", "vf_clip"):
            if getattr(self, name) is not None:
                check_range(f"{p}{name}", getattr(self, name), 0.0)
        if self.tis_cap is not None:
            check_range(f"{p}tis_cap", self.tis_cap, 1.0)
        check_choice(f"{p}kl_in", self.kl_in, ("reward", "loss"))
        if self.temperature == 0:
            raise ConfigError(f"{p}temperature=0 (greedy) cannot explore; RL needs sampling, e.g. 1.0")
        if self.episodes % self.group_size:
            raise ConfigError(f"{p}episodes={self.episodes} must be a multiple of {p}group_size={self.group_size}")
        if self.group_size < estimator.min_group_size:
            raise ConfigError(f"{p}group_size={self.group_size}: {self.algorithm} needs groups of at least "
                              f"{estimator.min_group_size}")  # fmt: skip
        if self.minibatches > self.episodes:
            raise ConfigError(f"{p}minibatches={self.minibatches} exceeds {p}episodes={self.episodes}")
