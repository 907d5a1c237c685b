"""What every text game shares: knobs, text spaces, the inbox each observation is read from, invalid turns, rewards.

Two bases on PettingZoo's two APIs: :class:`TurnGame` (AEC, one agent acts per step) and :class:`SimultaneousGame`
(Parallel, every live agent acts each step; PettingZoo's ``parallel_to_aec`` gives its AEC view).

An agent's observation is its next message, as in the single-agent :class:`~agentenv.core.TextEnv`: the rules and
its private information on its first turn, then whatever happened since it last acted (the other agents' moves and
messages, feedback on its own turn), then the current state and what it may do. A rollout appends observations and
turns to one conversation per agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

try:
    from pettingzoo import AECEnv, ParallelEnv
except ImportError as e:
    raise ImportError(
        f"Multi-agent games need the 'games' extra ({e.name} is missing): pip install 'agentenv[games]'"
    ) from e

from agentenv.core import InvalidAction, _check_kwargs, _check_seed, parse_action, terminal_text
from agentenv.errors import check_choice, check_range
from agentenv.rewards import ProgressReward
from agentenv.spaces import TextSpace

GAME_REWARD_MODES = ("sparse", "dense")


class GameText(str):
    """An observation: a plain ``str`` that also carries numpy's string dtype, because PettingZoo's ``api_test``
    compares ``observation.dtype`` with the observation space's (it was written for arrays)."""

    __slots__ = ()
    dtype = np.dtype(str)


class GameRules:
    """Knobs, spaces, inboxes and action reading shared by both APIs. Subclasses name their ``agent_names``."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "text_game",
        "render_modes": ["ansi", "human"],
        "is_parallelizable": False,
    }
    agent_names: ClassVar[tuple[str, ...]] = ("player_0", "player_1")
    #: Whether a turn may span several lines (chat games) or must be one command on one line.
    multiline_actions = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        _check_kwargs(cls, kwargs)  # unknown or ill-typed knobs fail with their names, like single-agent envs
        return super().__new__(cls)

    def _configure(
        self,
        *,
        reward: str,
        invalid_action_penalty: float,
        max_action_length: int,
        max_observation_length: int,
        render_mode: str | None,
    ) -> None:
        check_choice("reward", reward, GAME_REWARD_MODES)
        check_range("invalid_action_penalty", invalid_action_penalty, 0.0)
        check_range("max_action_length", max_action_length, 1, integer=True)
        check_range("max_observation_length", max_observation_length, 256, integer=True)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.reward_mode = reward
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.max_action_length = max_action_length
        self.render_mode = render_mode
        self.possible_agents = list(self.agent_names)
        self.agents: list[str] = []
        self._observation_spaces = {a: TextSpace(max_observation_length) for a in self.possible_agents}
        self._action_spaces = {a: TextSpace(max_action_length) for a in self.possible_agents}
        self._rng: np.random.Generator | None = None
        self._inbox: dict[str, list[str]] = {a: [] for a in self.possible_agents}
        self.transcript: list[str] = []  # what happened, for render() and people; agents read their inboxes
        self.turn = 0

    def observation_space(self, agent: str) -> TextSpace:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> TextSpace:
        return self._action_spaces[agent]

    def _new_rng(self, seed: Any) -> np.random.Generator:
        seed = _check_seed(seed)
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        return self._rng

    def _read(self, action: Any) -> str | InvalidAction:
        """The agent's turn as text, or why it is not one (any value, size or encoding; never raises)."""
        parsed = parse_action(
            action, max_length=self.max_action_length, accepts_tools=False, multiline=self.multiline_actions
        )
        return parsed.strip() if isinstance(parsed, str) else parsed  # type: ignore[union-attr]

    def _tell(self, agents: str | list[str], text: str) -> None:
        for agent in [agents] if isinstance(agents, str) else agents:
            self._inbox[agent].append(text)

    def _status(self, agent: str) -> str:
        """The state as ``agent`` sees it now and what it may do; ends every observation."""
        raise NotImplementedError

    def _message(self, agent: str) -> GameText:
        text = "\n\n".join([*self._inbox[agent], self._status(agent)])
        limit = self._observation_spaces[agent].max_length
        if len(text) > limit:  # the oldest news goes first; the state and the prompt stay
            text = "[...]\n" + text[len(text) - limit + 6 :]
        return GameText(text)

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        text = terminal_text("\n".join(self.transcript))
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Nothing to release; safe to call any number of times."""


class TurnGame(GameRules, AECEnv):
    """A turn-based game on PettingZoo's AEC API.

    Subclasses implement ``_new_game(rng) -> first agent`` (and tell each agent the rules), ``_play(agent, text)``
    (apply a valid-looking turn; return why it breaks the rules, or ``None``), ``_status(agent)``, ``_forfeit``
    and, for dense rewards, ``_potentials()``. Rewards:

    * the outcome (``_end``) is paid when the game ends;
    * ``dense`` adds potential-based shaping F = Φ(s') − Φ(s) (Ng et al., 1999) with Φ(end) = 0, so an episode's
      dense rewards sum to its outcome minus Φ(start) — a constant per game — and optimal play is unchanged;
    * an invalid turn costs its agent ``invalid_action_penalty``; after ``max_invalid`` invalid turns in a row the
      agent forfeits. Whether an invalid turn passes the move (``invalid_turn_passes``) is the game's rule.
    """

    invalid_turn_passes = False

    def __init__(
        self,
        *,
        reward: str = "sparse",
        invalid_action_penalty: float = 0.1,
        max_invalid: int = 3,
        max_turns: int = 200,
        max_action_length: int = 4096,
        max_observation_length: int = 16_384,
        render_mode: str | None = None,
    ):
        super().__init__()
        self._configure(
            reward=reward,
            invalid_action_penalty=invalid_action_penalty,
            max_action_length=max_action_length,
            max_observation_length=max_observation_length,
            render_mode=render_mode,
        )
        check_range("max_invalid", max_invalid, 1, integer=True)
        check_range("max_turns", max_turns, 1, integer=True)
        self.max_invalid, self.max_turns = max_invalid, max_turns
        self._potential: dict[str, float] = {}
        self._started = False

    # ---- hooks ------------------------------------------------------------------------------------------
    def _new_game(self, rng: np.random.Generator) -> str:
        raise NotImplementedError

    def _play(self, agent: str, text: str) -> str | None:
        raise NotImplementedError

    def _forfeit(self, agent: str) -> None:
        """``agent`` made ``max_invalid`` invalid turns in a row: end the game by its rules."""
        raise NotImplementedError

    def _potentials(self) -> dict[str, float]:
        return dict.fromkeys(self.possible_agents, 0.0)

    def _after_turn(self) -> None:
        """After every turn, valid or not: a game with a turn limit in its rules ends here."""

    def _next_agent(self, agent: str) -> str:
        i = self.possible_agents.index(agent)
        return self.possible_agents[(i + 1) % len(self.possible_agents)]

    # ---- PettingZoo AEC API ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        rng = self._new_rng(seed)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._inbox = {a: [] for a in self.agents}
        self._invalid_streak = dict.fromkeys(self.agents, 0)
        self.transcript, self.turn, self._over = [], 0, False
        self.agent_selection = self._new_game(rng)
        self._potential = self._potentials()
        self._started = True

    def observe(self, agent: str) -> GameText:
        return self._message(agent)

    def step(self, action: Any) -> None:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(None)  # a finished agent's turn is ignored, whatever it says
            return
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        self.turn += 1
        self._inbox[agent].clear()
        text = self._read(action)
        reason = text.reason if isinstance(text, InvalidAction) else self._play(agent, text)
        info: dict[str, Any] = {"turn": self.turn, "invalid_action": reason is not None}
        if reason is not None:
            info["invalid_reason"] = reason
            self._invalid_turn(agent, reason)
        else:
            self._invalid_streak[agent] = 0
            if not self._over:
                self.agent_selection = self._next_agent(agent)
                self._shape()
        self.infos[agent] = {**self.infos[agent], **info}
        if not self._over:
            self._after_turn()
        if not self._over and self.turn >= self.max_turns:
            self._tell(self.agents, f"The game is stopped after {self.max_turns} turns.")
            self.truncations = dict.fromkeys(self.agents, True)
            self._over = True
        self._accumulate_rewards()
        if self._over:
            self._deads_step_first()

    # ---- helpers for subclasses ---------------------------------------------------------------------------
    def _pay(self, agent: str, amount: float) -> None:
        self.rewards[agent] = float(self.rewards[agent] + amount)

    def _shape(self) -> None:
        if self.reward_mode != "dense":
            return
        new = self._potentials()
        for a in self.agents:
            self._pay(a, new[a] - self._potential[a])
        self._potential = new

    def _end(self, outcome: Mapping[str, float], info: Mapping[str, Any]) -> None:
        """The game is over by its rules: pay each agent its outcome (and close the shaping). ``success`` in each
        agent's info is ``outcome > 0``."""
        for a in self.agents:
            self._pay(a, outcome[a] - (self._potential[a] if self.reward_mode == "dense" else 0.0))
            self.infos[a] = {**self.infos[a], **info, "outcome": float(outcome[a]), "success": outcome[a] > 0}
        self._potential = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, True)
        self._over = True

    def _invalid_turn(self, agent: str, reason: str) -> None:
        self._pay(agent, -self.invalid_action_penalty)
        self._invalid_streak[agent] += 1
        self.transcript.append(f"{agent}: invalid turn ({reason})")
        if self._invalid_streak[agent] >= self.max_invalid:
            self._tell(agent, f"Invalid turn: {reason}.")
            self._forfeit(agent)
            return
        left = self.max_invalid - self._invalid_streak[agent]
        then = "The turn passes." if self.invalid_turn_passes else "Try again."
        self._tell(agent, f"Invalid turn: {reason}. {then} ({left} more invalid turn(s) in a row forfeits.)")
        if self.invalid_turn_passes:
            self.agent_selection = self._next_agent(agent)


class SimultaneousGame(GameRules, ParallelEnv):
    """A game where every live agent acts each step, on PettingZoo's Parallel API.

    Subclasses implement ``_new_game(rng)`` (telling each agent the rules), ``_play_round(turns)`` with the valid
    turns (agent -> text) of this round, which returns rule-breaking turns as agent -> reason, and ``_status``;
    they call ``_end(success, info)`` when the game is over. Rewards are a team's: progress in [0, 1]
    (``_progress()``) paid at the end (``sparse``: 1 on success) or as it is made (``dense``: the deltas, summing
    to the final progress), minus ``invalid_action_penalty`` for each agent's invalid turns. A missing or invalid
    turn is silence for that round.
    """

    metadata: ClassVar[dict[str, Any]] = {**GameRules.metadata, "is_parallelizable": True}

    def __init__(
        self,
        *,
        reward: str = "sparse",
        invalid_action_penalty: float = 0.1,
        max_action_length: int = 4096,
        max_observation_length: int = 16_384,
        render_mode: str | None = None,
    ):
        super().__init__()
        self._configure(
            reward=reward,
            invalid_action_penalty=invalid_action_penalty,
            max_action_length=max_action_length,
            max_observation_length=max_observation_length,
            render_mode=render_mode,
        )
        self._started = False

    def _new_game(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _play_round(self, turns: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def _progress(self) -> float:
        raise NotImplementedError

    def reset(
        self, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, GameText], dict[str, dict[str, Any]]]:
        rng = self._new_rng(seed)
        self.agents = list(self.possible_agents)
        self._inbox = {a: [] for a in self.agents}
        self.transcript, self.turn, self._over, self._success = [], 0, False, False
        self._end_info: dict[str, Any] = {}
        self._rewarder = ProgressReward(self.reward_mode)
        self._new_game(rng)
        self._started = True
        return {a: self._message(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = actions if isinstance(actions, Mapping) else {}
        self.turn += 1
        for a in self.agents:
            self._inbox[a].clear()
        reasons: dict[str, str] = {}
        turns: dict[str, str] = {}
        for a in self.agents:
            text = self._read(actions[a]) if a in actions else InvalidAction("no turn was given")
            if isinstance(text, InvalidAction):
                reasons[a] = text.reason
            else:
                turns[a] = text
        reasons.update(self._play_round(turns))
        team = self._rewarder(self._progress(), success=self._success, last_turn=self._over)
        rewards = dict.fromkeys(self.agents, team)
        infos: dict[str, dict[str, Any]] = {}
        for a in self.agents:
            infos[a] = {"turn": self.turn, "invalid_action": a in reasons}
            if a in reasons:
                infos[a]["invalid_reason"] = reasons[a]
                rewards[a] -= self.invalid_action_penalty
                self._tell(a, f"Invalid turn: {reasons[a]}. It counts as silence.")
                self.transcript.append(f"{a}: invalid turn ({reasons[a]})")
            if self._over:
                infos[a].update(self._end_info, success=self._success, outcome=float(self._success))
        done = dict.fromkeys(self.agents, self._over)
        observations = {a: self._message(a) for a in self.agents}
        if self._over:
            self.agents = []
        return observations, rewards, done, dict.fromkeys(done, False), infos

    def _end(self, success: bool, info: Mapping[str, Any]) -> None:
        self._over, self._success, self._end_info = True, success, dict(info)
