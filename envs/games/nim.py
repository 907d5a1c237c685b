"""Nim: two players take turns removing objects from heaps; whoever takes the last object wins (normal play).

Zero-sum with a known optimal strategy (Bouton, 1901): a position is lost for the player to move exactly when the
nim-sum (XOR of the heap sizes) is 0, and from any other position some move makes it 0.
"""

from __future__ import annotations

import re
from functools import reduce
from operator import xor
from typing import Any, ClassVar

import numpy as np

from agentenv.envs.games.base import TurnGame
from agentenv.errors import check_range

RULES = """You are {agent}, playing Nim against {opponent}. There are {heaps} heaps of objects. Players take \
turns; on your turn remove one or more objects from a single heap. Whoever takes the last object wins.
Answer with one line: take <count> from heap <number>   (heaps are numbered from 1)."""

_MOVE = re.compile(r"take\s+(\d{1,6})\s+from\s+heap\s+(\d{1,6})\s*\.?", re.IGNORECASE)


def nim_sum(heaps: list[int] | tuple[int, ...]) -> int:
    return reduce(xor, heaps, 0)


def optimal_move(heaps: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """``(heap index, count)``: a move to nim-sum 0 when one exists; otherwise one object from the largest heap
    (the position is lost against perfect play; taking little keeps the game long for the opponent to err)."""
    total = nim_sum(heaps)
    if total:
        for i, h in enumerate(heaps):
            if h ^ total < h:
                return i, h - (h ^ total)
    largest = max(range(len(heaps)), key=lambda i: heaps[i])
    return largest, 1


class NimGame(TurnGame):
    """Nim on ``heaps`` heaps of 1 to ``max_heap`` objects each (seeded); ``player_0`` moves first.

    Knobs: ``heaps`` (2-8) and ``max_heap`` (1-63) set the size of the game tree. Outcome: +1 for the winner, -1 for
    the loser. ``dense`` adds zero-sum shaping with Φ = +0.5 for the player whose position is won under perfect play
    (-0.5 for the other): a move that throws away a won position costs its player 1 at once. An invalid turn
    (unreadable, or against the rules) must be replayed; ``max_invalid`` in a row forfeit the game.
    """

    metadata: ClassVar[dict[str, Any]] = {**TurnGame.metadata, "name": "nim_v0"}

    def __init__(self, *, heaps: int = 3, max_heap: int = 7, **kwargs: Any):
        check_range("heaps", heaps, 2, 8, integer=True)
        check_range("max_heap", max_heap, 1, 63, integer=True)
        super().__init__(**kwargs)
        self.n_heaps, self.max_heap = heaps, max_heap
        self.heaps: list[int] = []

    def _new_game(self, rng: np.random.Generator) -> str:
        self.heaps = [int(h) for h in rng.integers(1, self.max_heap + 1, size=self.n_heaps)]
        for agent in self.agents:
            other = self._next_agent(agent)
            self._tell(agent, RULES.format(agent=agent, opponent=other, heaps=self.n_heaps))
        self.transcript.append(f"Heaps: {self._heaps_text()}")
        return self.possible_agents[0]

    def _heaps_text(self) -> str:
        return ", ".join(f"heap {i + 1}: {h}" for i, h in enumerate(self.heaps))

    def _status(self, agent: str) -> str:
        if self._over:
            outcome = self.infos[agent].get("outcome")
            result = "You won." if outcome == 1 else "You lost." if outcome == -1 else "The game is over."
            return f"Heaps: {self._heaps_text()}. {result}"
        if agent == self.agent_selection:
            return f"Heaps: {self._heaps_text()}. Your move."
        return f"Heaps: {self._heaps_text()}. Waiting for {self.agent_selection}."

    def _play(self, agent: str, text: str) -> str | None:
        match = _MOVE.fullmatch(text)
        if match is None:
            return "write your move as: take <count> from heap <number>"
        count, heap = int(match.group(1)), int(match.group(2))
        if not 1 <= heap <= len(self.heaps):
            return f"there is no heap {heap}; heaps are numbered 1 to {len(self.heaps)}"
        if not 1 <= count <= self.heaps[heap - 1]:
            return f"heap {heap} has {self.heaps[heap - 1]} object(s); take between 1 and that many"
        self.heaps[heap - 1] -= count
        move = f"{agent} took {count} from heap {heap}."
        self.transcript.append(move)
        self._tell(agent, f"You took {count} from heap {heap}.")
        self._tell([a for a in self.agents if a != agent], move)
        if not any(self.heaps):
            self._end(self._won_by(agent), {"winner": agent})
        return None

    def _won_by(self, winner: str) -> dict[str, float]:
        return {a: 1.0 if a == winner else -1.0 for a in self.agents}

    def _forfeit(self, agent: str) -> None:
        winner = self._next_agent(agent)
        self._tell(self.agents, f"{agent} forfeits after {self.max_invalid} invalid turns in a row.")
        self.transcript.append(f"{agent} forfeits.")
        self._end(self._won_by(winner), {"winner": winner, "forfeit": agent})

    def _potentials(self) -> dict[str, float]:
        if not self.heaps or not any(self.heaps):
            return dict.fromkeys(self.possible_agents, 0.0)
        mover = self.agent_selection if self.agent_selection in self.possible_agents else self.possible_agents[0]
        mover_value = 0.5 if nim_sum(self.heaps) else -0.5
        return {a: mover_value if a == mover else -mover_value for a in self.possible_agents}

    # ---- scripted players -----------------------------------------------------------------------------------
    def legal_actions(self, agent: str) -> list[str]:
        """Every legal move for ``agent`` now (empty when it is not its turn)."""
        if self._over or agent != self.agent_selection:
            return []
        return [f"take {c} from heap {i + 1}" for i, h in enumerate(self.heaps) for c in range(1, h + 1)]

    def expert_action(self, agent: str) -> str:
        """The move of a perfect player (Bouton's strategy)."""
        heap, count = optimal_move(self.heaps)
        return f"take {count} from heap {heap + 1}"
