"""Reward density: one env, three ways to pay out the same progress.

* ``sparse`` — 1 on the turn the task is solved, else 0.
* ``dense``  — each turn pays the progress it made (milestone deltas); an episode's rewards sum to its final
  progress, so a solved episode sums to 1.
* ``ratio``  — partial credit at the end: the last turn (terminated or truncated) pays the final progress
  ``score / max_score`` (BALROG-style), every other turn 0.
"""

from __future__ import annotations

from agentenv.errors import ConfigError, check_choice

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
