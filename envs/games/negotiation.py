"""Deal or No Deal (after Lewis et al., 2017): two agents split a pool of items; each values the items privately,
and each one's payoff is the exact value of what it gets if they agree, nothing if they do not.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, ClassVar

import numpy as np

from agentenv.envs.games.base import TurnGame
from agentenv.errors import check_range

ITEMS = ("book", "hat", "ball", "pen", "cup")
#: Each agent's values make the whole pool worth this much to it (as in Lewis et al.).
TOTAL_VALUE = 10

RULES = """You are {agent}, negotiating with {opponent} how to split this pool: {pool}.
Your private values per item: {values} (the whole pool is worth {total} to you; {opponent} values items differently \
and you cannot see how). If you agree, you score the value of what you keep; with no deal after {rounds} turns in \
all, both score 0.
Each turn, the first line is your move, either:
  propose {example}   (what YOU keep, every item named; the other agent gets the rest)
  accept   (agree to the other agent's last proposal)
Any further lines are a message to {opponent}."""

_ITEM_COUNT = re.compile(r"([a-z]+?)s?\s*=\s*(\d{1,3})")


def value_vectors(counts: tuple[int, ...], total: int = TOTAL_VALUE) -> list[tuple[int, ...]]:
    """Every vector of non-negative integer values, one per item type, under which the pool is worth ``total``."""
    if not counts:
        return [()] if total == 0 else []
    head, *rest = counts
    return [(v, *tail) for v in range(total // head + 1) for tail in value_vectors(tuple(rest), total - v * head)]


class NegotiationGame(TurnGame):
    """Split ``items`` item types (2-5), 1 to ``max_count`` (1-5) of each, in at most ``max_rounds`` turns (2-30).

    Each agent's private values are drawn uniformly among the integer vectors that make the pool worth 10 to it
    (the two differ). Payoff: the value of the agent's share / 10, in [0, 1], if one accepts the other's last
    proposal; 0 for both if the turns run out. ``dense`` adds potential-based shaping with Φ = what the standing
    proposal is worth to the agent (0 with none), so a dense episode still sums to the payoff. An invalid turn
    passes the move and counts as a turn; ``max_invalid`` in a row walk away (no deal).
    """

    metadata: ClassVar[dict[str, Any]] = {**TurnGame.metadata, "name": "negotiation_v0"}
    invalid_turn_passes = True
    multiline_actions = True

    def __init__(self, *, items: int = 3, max_count: int = 4, max_rounds: int = 10, **kwargs: Any):
        check_range("items", items, 2, len(ITEMS), integer=True)
        check_range("max_count", max_count, 1, 5, integer=True)
        check_range("max_rounds", max_rounds, 2, 30, integer=True)
        super().__init__(**kwargs)
        self.n_items, self.max_count, self.max_rounds = items, max_count, max_rounds
        self.items = ITEMS[:items]

    def _new_game(self, rng: np.random.Generator) -> str:
        options: list[tuple[int, ...]] = []
        while len(options) < 2:  # some pools cannot be worth exactly 10 (4 of each of 3 items): draw again
            self.counts = tuple(int(c) for c in rng.integers(1, self.max_count + 1, size=self.n_items))
            options = value_vectors(self.counts)
        first = options[int(rng.integers(len(options)))]
        others = [v for v in options if v != first] or options
        second = others[int(rng.integers(len(others)))]
        self.values = dict(zip(self.possible_agents, (first, second), strict=True))
        self.offer: tuple[str, tuple[int, ...]] | None = None  # (proposer, what the proposer keeps)
        pool = ", ".join(f"{c} {item}{'s' if c > 1 else ''}" for item, c in zip(self.items, self.counts, strict=True))
        example = " ".join(f"{item}={c // 2}" for item, c in zip(self.items, self.counts, strict=True))
        for agent in self.possible_agents:
            values = ", ".join(f"{item}={v}" for item, v in zip(self.items, self.values[agent], strict=True))
            text = RULES.format(
                agent=agent,
                opponent=self._next_agent(agent),
                pool=pool,
                values=values,
                total=TOTAL_VALUE,
                rounds=self.max_rounds,
                example=example,
            )
            self._tell(agent, text)
        self.transcript.append(f"Pool: {pool}. Values: {self.values}")
        return self.possible_agents[0]

    def worth(self, agent: str, share: tuple[int, ...]) -> float:
        """What ``share`` (a count per item type) is worth to ``agent``, in [0, 1]."""
        return sum(v * n for v, n in zip(self.values[agent], share, strict=True)) / TOTAL_VALUE

    def _shares(self) -> dict[str, tuple[int, ...]]:
        """The standing proposal as each agent's share."""
        assert self.offer is not None
        proposer, kept = self.offer
        rest = tuple(c - k for c, k in zip(self.counts, kept, strict=True))
        return {a: kept if a == proposer else rest for a in self.possible_agents}

    def _share_text(self, share: tuple[int, ...]) -> str:
        return " ".join(f"{item}={n}" for item, n in zip(self.items, share, strict=True))

    def _status(self, agent: str) -> str:
        turns = f"Turn {self.turn + 1} of {self.max_rounds}."
        if self._over:
            return f"The negotiation is over. You score {self.infos[agent].get('outcome', 0.0) * TOTAL_VALUE:g}."
        offer = "No proposal stands."
        if self.offer is not None:
            share = self._shares()[agent]
            offer = f"Standing proposal by {self.offer[0]}: you get {self._share_text(share)}."
        prompt = "Your move." if agent == self.agent_selection else f"Waiting for {self.agent_selection}."
        return f"{offer} {turns} {prompt}"

    def _parse_proposal(self, command: str) -> tuple[int, ...] | str:
        body = command[len("propose") :].strip().lower()
        pairs = _ITEM_COUNT.findall(body)
        if not pairs or _ITEM_COUNT.sub("", body).strip(" ,;."):
            return f"write the proposal as: propose {self._share_text(self.counts)} (what you keep)"
        kept: dict[str, int] = {}
        for name, count in pairs:
            if name not in self.items:
                return f"there are no {name}s in the pool; the items are {', '.join(self.items)}"
            if name in kept:
                return f"{name} is named twice"
            kept[name] = int(count)
        missing = [i for i in self.items if i not in kept]
        if missing:
            return f"name every item, also {', '.join(missing)} (=0 if you keep none)"
        for item, c in zip(self.items, self.counts, strict=True):
            if kept[item] > c:
                return f"there are only {c} {item}(s)"
        return tuple(kept[i] for i in self.items)

    def _play(self, agent: str, text: str) -> str | None:
        command, _, message = text.partition("\n")
        command = command.strip().lower()
        other = self._next_agent(agent)
        if command.rstrip(".!") == "accept":
            if self.offer is None or self.offer[0] == agent:
                return "there is no proposal from the other agent to accept"
            self._count_round(agent, f"{agent} accepts.", message)
            shares = self._shares()
            outcome = {a: self.worth(a, shares[a]) for a in self.possible_agents}
            self._end(outcome, {"deal": shares, **self._efficiency(outcome)})
            return None
        if not command.startswith("propose"):
            return "start your turn with a move on its own line: propose ... or accept"
        kept = self._parse_proposal(command)
        if isinstance(kept, str):
            return kept
        self.offer = (agent, kept)
        given = self._shares()[other]
        self._count_round(agent, f"{agent} proposes to keep {self._share_text(kept)}.", message)
        self._tell(other, f"{agent} proposes: you get {self._share_text(given)}.")
        self._tell(agent, f"You proposed to keep {self._share_text(kept)}.")
        return None

    def _count_round(self, agent: str, move: str, message: str) -> None:
        self.transcript.append(move + (f" Message: {message.strip()}" if message.strip() else ""))
        if message.strip():
            self._tell(self._next_agent(agent), f"{agent} says: {message.strip()}")

    def _efficiency(self, outcome: dict[str, float]) -> dict[str, Any]:
        """How good the result is against every possible split: the best joint payoff and Pareto optimality."""
        first, second = self.possible_agents
        splits = []
        for kept in itertools.product(*(range(c + 1) for c in self.counts)):
            rest = tuple(c - k for c, k in zip(self.counts, kept, strict=True))
            splits.append({first: self.worth(first, kept), second: self.worth(second, rest)})
        dominated = any(
            all(s[a] >= outcome[a] for a in outcome) and any(s[a] > outcome[a] for a in outcome) for s in splits
        )
        return {"max_joint_payoff": max(sum(s.values()) for s in splits), "pareto_optimal": not dominated}

    def _after_turn(self) -> None:
        if self.turn >= self.max_rounds:
            self._tell(self.agents, f"No deal after {self.max_rounds} turns.")
            self.transcript.append("No deal.")
            self._end(dict.fromkeys(self.possible_agents, 0.0), {"deal": None, "reason": "out of turns"})

    def _forfeit(self, agent: str) -> None:
        self._tell(self.agents, f"{agent} walks away after {self.max_invalid} invalid turns in a row. No deal.")
        self.transcript.append(f"{agent} walks away.")
        self._end(dict.fromkeys(self.possible_agents, 0.0), {"deal": None, "walked_away": agent})

    def _potentials(self) -> dict[str, float]:
        if self.offer is None:
            return dict.fromkeys(self.possible_agents, 0.0)
        shares = self._shares()
        return {a: self.worth(a, shares[a]) for a in self.possible_agents}

    # ---- scripted players -----------------------------------------------------------------------------------
    def legal_actions(self, agent: str) -> list[str]:
        """Every proposal, and ``accept`` when the other agent's proposal stands (empty when not its turn)."""
        if self._over or agent != self.agent_selection:
            return []
        moves = [f"propose {self._share_text(k)}" for k in itertools.product(*(range(c + 1) for c in self.counts))]
        if self.offer is not None and self.offer[0] != agent:
            moves.append("accept")
        return moves

    def expert_action(self, agent: str) -> str:
        """A reference negotiator (not an optimal one: values are private): it asks for 0.8 of its own total value,
        conceding 0.1 a turn down to 0.5, keeps the items it values most per unit, and accepts any standing
        proposal worth at least what it would ask for now."""
        target = max(0.5, 0.8 - 0.1 * (self.turn // 2))
        if self.offer is not None and self.offer[0] != agent and self.worth(agent, self._shares()[agent]) >= target:
            return "accept"
        values = self.values[agent]
        kept = [0] * self.n_items
        for i in sorted(range(self.n_items), key=lambda i: -values[i]):
            while kept[i] < self.counts[i] and values[i] > 0 and self.worth(agent, tuple(kept)) < target:
                kept[i] += 1
        return f"propose {self._share_text(tuple(kept))}"
