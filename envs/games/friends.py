"""Mutual Friends (after He et al., 2017): two agents each see a private list of names with exactly one name in
common; they win together if both select that name. Neither can win without learning about the other's list, so
they must talk. Simultaneous: each round both agents send a message (or select) at once.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from agentenv.envs.games.base import SimultaneousGame
from agentenv.errors import check_range

_NAME_TEXT = (
    "Ada Alan Alice Amir Ana Arjun Aziz Bea Ben Bianca Bo Carla Chen Chloe Dara Diego Dmitri Elena Eli Emma Farah "
    "Felix Gus Hana Hugo Ines Ivan Jade Jonas Kai Kenji Lara Leo Lina Luca Maya Mei Mila Nadia Nico Nils Noor Olga "
    "Omar Paco Pia Quinn Rosa Rui Sami Sara Sofia Tariq Tess Theo Uma Vera Viktor Wen Yara Yusuf Zoe Zara Ravi"
)
NAMES: tuple[str, ...] = tuple(_NAME_TEXT.split())

RULES = """You are {agent}, working with your partner {partner}. Each of you has a private list of {size} friends; \
exactly one friend is on both lists. You both win if you both select that friend. You cannot see your partner's \
list: talk to find the friend you share. You have {rounds} rounds; each round you and your partner act at the same \
time.
Each turn, either write a message to your partner (any text), or answer with one line: select <name>   \
(a name from your list; you select only once)."""

_SELECT = re.compile(r"select\s+(\S+?)\s*\.?", re.IGNORECASE)


class MutualFriendsGame(SimultaneousGame):
    """Two agents, private lists of ``hand_size`` names (2-20) sharing exactly one; ``max_rounds`` rounds (2-30).

    Team reward. Progress: 0.5 once the shared name has been written in a message (the information crossed), and
    0.25 for each agent that selects it; success when both select it. ``sparse`` pays 1 on success; ``dense`` pays
    the progress as it is made (an episode sums to its final progress). A wrong selection makes success impossible;
    the game ends when both have selected or the rounds run out.
    """

    metadata: ClassVar[dict[str, Any]] = {**SimultaneousGame.metadata, "name": "mutual_friends_v0"}
    multiline_actions = True

    def __init__(self, *, hand_size: int = 5, max_rounds: int = 6, **kwargs: Any):
        check_range("hand_size", hand_size, 2, 20, integer=True)
        check_range("max_rounds", max_rounds, 2, 30, integer=True)
        super().__init__(**kwargs)
        self.hand_size, self.max_rounds = hand_size, max_rounds
        self.lists: dict[str, list[str]] = {}
        self.shared = ""

    def _partner(self, agent: str) -> str:
        return next(a for a in self.possible_agents if a != agent)

    def _new_game(self, rng: np.random.Generator) -> None:
        picked = [NAMES[i] for i in rng.choice(len(NAMES), size=2 * self.hand_size - 1, replace=False)]
        self.shared = picked[0]
        halves = (picked[1 : self.hand_size], picked[self.hand_size :])
        self.lists = {}
        for agent, others in zip(self.possible_agents, halves, strict=True):
            names = [self.shared, *others]
            self.lists[agent] = [names[i] for i in rng.permutation(len(names))]
        self.selected: dict[str, str] = {}
        self.heard: dict[str, list[str]] = {a: [] for a in self.possible_agents}
        self.named_shared = False
        for agent in self.possible_agents:
            partner = self._partner(agent)
            self._tell(agent, RULES.format(agent=agent, partner=partner, size=self.hand_size, rounds=self.max_rounds))
        self.transcript.append(" | ".join(f"{a}: {', '.join(names)}" for a, names in self.lists.items()))

    def _status(self, agent: str) -> str:
        head = f"Your friends: {', '.join(self.lists[agent])}."
        if self._over:
            result = "You both found" if self._success else "You did not both select"
            return f"{head} The game is over. {result} the shared friend, {self.shared}."
        mine = f" You selected {self.selected[agent]}." if agent in self.selected else ""
        return f"{head}{mine} Round {self.turn + 1} of {self.max_rounds}: your turn."

    def _play_round(self, turns: dict[str, str]) -> dict[str, str]:
        reasons: dict[str, str] = {}
        for agent, text in turns.items():
            partner = self._partner(agent)
            match = _SELECT.fullmatch(text)
            if match is None:
                self.heard[partner].append(text)
                self._tell(partner, f"{agent} says: {text}")
                self.transcript.append(f"{agent}: {text}")
                if re.search(rf"\b{self.shared}\b", text, re.IGNORECASE):
                    self.named_shared = True
                continue
            name = next((n for n in self.lists[agent] if n.lower() == match.group(1).lower()), None)
            if agent in self.selected:
                reasons[agent] = f"you already selected {self.selected[agent]}"
            elif name is None:
                reasons[agent] = f"{match.group(1)!r} is not on your list"
            else:
                self.selected[agent] = name
                self._tell(agent, f"You selected {name}.")
                self._tell(partner, f"{agent} selected {name}.")
                self.transcript.append(f"{agent} selects {name}")
        if len(self.selected) == len(self.possible_agents):
            success = all(name == self.shared for name in self.selected.values())
            self._end(success, {"shared": self.shared, "selected": dict(self.selected)})
        elif self.turn >= self.max_rounds:
            self._end(False, {"shared": self.shared, "selected": dict(self.selected), "reason": "out of rounds"})
        return reasons

    def _progress(self) -> float:
        correct = sum(name == self.shared for name in self.selected.values())
        return 0.5 * self.named_shared + 0.25 * correct

    # ---- scripted players -----------------------------------------------------------------------------------
    def legal_actions(self, agent: str) -> list[str]:
        """A few turns a random player picks from: each selection, sharing the list, small talk."""
        if self._over or agent not in self.agents:
            return []
        selections = [] if agent in self.selected else [f"select {n}" for n in self.lists[agent]]
        return [*selections, f"My friends: {', '.join(self.lists[agent])}.", "Hello! Who is on your list?"]

    def expert_action(self, agent: str) -> str:
        """Share the whole list, then select the one listed name the partner also wrote (from what this agent was
        told only). Wins in two rounds when both play it."""
        if agent in self.selected:
            return "I have selected."
        heard = " ".join(self.heard[agent])
        candidates = [n for n in self.lists[agent] if re.search(rf"\b{n}\b", heard, re.IGNORECASE)]
        if len(candidates) == 1:
            return f"select {candidates[0]}"
        return f"My friends: {', '.join(self.lists[agent])}."
