"""Reward shaping: density, discounting, bounded centring, length and format penalties.

Density — one env, three ways to pay out the same progress:

* ``sparse`` — 1 on the turn the task is solved, else 0.
* ``dense``  — each turn pays the progress it made (milestone deltas); an episode's rewards sum to its final
  progress, so a solved episode sums to 1.
* ``ratio``  — partial credit at the end: the last turn (terminated or truncated) pays the final progress
  ``score / max_score`` (BALROG-style), every other turn 0.

Envs that report ``info["progress"]`` can be re-densified from outside with :class:`ProgressDensity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards.base import Reward, Sample, Score, prefixed

REWARD_MODES = ("sparse", "dense", "ratio")


class ProgressReward:
    """Turns an episode's progress in [0, 1] into the turn rewards of the chosen density."""

    def __init__(self, mode: str = "sparse"):
        check_choice("reward", mode, REWARD_MODES)
        self.mode = mode
        self._paid = 0.0

    def reset(self) -> None:
        self._paid = 0.0

    def __call__(self, progress: float, *, success: bool, last_turn: bool) -> float:
        if not 0.0 <= progress <= 1.0:
            raise ConfigError(f"progress must lie in [0, 1], got {progress}")
        if self.mode == "sparse":
            return 1.0 if success else 0.0
        if self.mode == "dense":
            delta, self._paid = progress - self._paid, max(self._paid, progress)
            return max(delta, 0.0)
        return progress if (last_turn or success) else 0.0


class ProgressDensity(gym.Wrapper):
    """Re-pays any env that reports ``info["progress"]`` (and ``info["success"]``) at another density.

    The env's own reward stays visible as ``reward_parts["env"]``. Truncation by an outer ``TimeLimit`` is
    seen too, so ``ratio`` pays on whatever ends the episode.
    """

    def __init__(self, env: gym.Env, reward: str = "dense"):
        super().__init__(env)
        self._rewarder = ProgressReward(reward)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._rewarder.reset()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, env_reward, terminated, truncated, info = self.env.step(action)
        if "progress" not in info:
            raise ConfigError(f"ProgressDensity needs info['progress'], which {self.env.unwrapped} does not report")
        progress = min(1.0, max(0.0, float(info["progress"])))
        reward = self._rewarder(progress, success=bool(info.get("success")), last_turn=terminated or truncated)
        info = {**info, "reward_parts": {self._rewarder.mode: reward, "env": float(env_reward)}}
        return observation, reward, terminated, truncated, info


def discounted_returns(rewards: Sequence[float], gamma: float = 1.0) -> list[float]:
    """``G_t = r_t + gamma * G_{t+1}``: each turn's return, so a terminal reward reaches turn t as gamma^(T-1-t) R."""
    check_range("gamma", gamma, 0.0, 1.0)
    out, running = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


class CentredSigmoid(Reward):
    """PAR-style bounded, centred shaping: ``sigmoid((r - r_ref) / temperature)`` of an inner reward.

    Bounding the reward and centring it on a reference (the score of the reference answer, or a given
    ``sample.metadata["reference_reward"]``) caps how much a reward model can be exploited (Fu et al., PAR).
    """

    def __init__(self, reward: Reward, *, temperature: float = 1.0, reference_value: float | None = None):
        super().__init__()
        check_range("temperature", temperature, 1e-6)
        if reference_value is not None:
            check_range("reference_value", reference_value)
        self.reward = reward
        self.temperature = float(temperature)
        self.reference_value = reference_value

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        scores = self.reward.batch(samples)
        refs = self._reference_values(samples)
        out = []
        for score, ref in zip(scores, refs, strict=True):
            if ref is None:
                out.append(Score(0.0, prefixed("reward", score), reason="no reference reward to centre on"))
                continue
            value = 1.0 / (1.0 + math.exp(-(score.value - ref) / self.temperature))
            out.append(Score(value, {**prefixed("reward", score), "reference_reward": ref}, reason=score.reason))
        return out

    def _reference_values(self, samples: Sequence[Sample]) -> list[float | None]:
        if self.reference_value is not None:
            return [self.reference_value] * len(samples)
        refs: list[float | None] = [s.metadata.get("reference_reward") for s in samples]
        missing = [i for i, r in enumerate(refs) if r is None and samples[i].reference is not None]
        if missing:
            as_answers = [Sample(samples[i].reference or "", samples[i].prompt, samples[i].reference) for i in missing]
            for i, score in zip(missing, self.reward.batch(as_answers), strict=True):
                refs[i] = score.value
        return refs


class LengthPenalty(Reward):
    """0 up to ``limit`` characters (or whitespace tokens), then ``-rate`` per unit over it, floored at ``-cap``."""

    def __init__(self, limit: int, *, rate: float = 0.001, cap: float = 1.0, unit: str = "chars"):
        super().__init__()
        check_range("limit", limit, 0, integer=True)
        check_range("rate", rate, 0.0)
        check_range("cap", cap, 0.0)
        check_choice("unit", unit, ("chars", "tokens"))
        self.limit, self.rate, self.cap, self.unit = limit, float(rate), float(cap), unit

    def score(self, sample: Sample) -> Score:
        size = len(sample.response) if self.unit == "chars" else len(sample.response.split())
        over = max(0, size - self.limit)
        return Score(-min(self.cap, over * self.rate), {"over_limit": float(over)})


class FormatPenalty(Reward):
    """``-penalty`` when a format check scores below ``threshold``, else 0 (to add to a task reward)."""

    def __init__(self, check: Reward, *, penalty: float = 1.0, threshold: float = 0.5):
        super().__init__()
        check_range("penalty", penalty, 0.0)
        check_range("threshold", threshold)
        self.check, self.penalty, self.threshold = check, float(penalty), float(threshold)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        return [
            Score(0.0 if s.value >= self.threshold else -self.penalty, prefixed("check", s), reason=s.reason)
            for s in self.check.batch(samples)
        ]
