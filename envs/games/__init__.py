"""Multi-agent text games on PettingZoo's API (see README.md in this folder).

``agentenv.make_multi("AgentEnv/Nim-v0")`` returns a PettingZoo env; ``agentenv.list_multi()`` lists the games.
This module imports no PettingZoo: the ``games`` extra is needed only when a game is made.
"""

from __future__ import annotations

#: Registered games: id -> (entry point, kwargs, description).
GAMES: dict[str, tuple[str, dict, str]] = {
    "Nim-v0": ("agentenv.envs.games.nim:NimGame", {}, "Nim, 3 heaps of 1-7 (zero-sum; Bouton's optimal strategy)"),
    "Nim-h2m3-v0": ("agentenv.envs.games.nim:NimGame", {"heaps": 2, "max_heap": 3}, "Nim, 2 heaps of 1-3 (tiny)"),
    "Nim-h5m15-v0": ("agentenv.envs.games.nim:NimGame", {"heaps": 5, "max_heap": 15}, "Nim, 5 heaps of 1-15"),
    "MutualFriends-v0": (
        "agentenv.envs.games.friends:MutualFriendsGame",
        {},
        "cooperative, simultaneous: 5 private names each, one shared; talk, then both select it",
    ),
    "MutualFriends-n12-v0": (
        "agentenv.envs.games.friends:MutualFriendsGame",
        {"hand_size": 12, "max_rounds": 8},
        "cooperative: 12 private names each, 8 rounds",
    ),
    "Negotiation-v0": (
        "agentenv.envs.games.negotiation:NegotiationGame",
        {},
        "Deal or No Deal: split 3 item types with private values, payoffs exact; 10 turns",
    ),
    "Negotiation-i5c5-v0": (
        "agentenv.envs.games.negotiation:NegotiationGame",
        {"items": 5, "max_count": 5, "max_rounds": 16},
        "Deal or No Deal with 5 item types of up to 5 each; 16 turns",
    ),
    "ProposerSolver-v0": (
        "agentenv.envs.games.proposer_solver:ProposerSolverGame",
        {},
        "proposer writes 6 arithmetic tasks (up to 4 operators, numbers to 100), solver answers; proposer paid at 50%",
    ),
    "ProposerSolver-o8n1000-v0": (
        "agentenv.envs.games.proposer_solver:ProposerSolverGame",
        {"rounds": 10, "max_operators": 8, "max_operand": 1000},
        "proposer-solver with 10 tasks of up to 8 operators, numbers to 1000",
    ),
    "Debate-v0": (
        "agentenv.envs.games.debate:DebateGame",
        {},
        "two debaters argue two answers to a search-world question, 2 rounds; a judge decides (zero-sum)",
    ),
    "Debate-h2r3-v0": (
        "agentenv.envs.games.debate:DebateGame",
        {"hops": 2, "rounds": 3},
        "debate on 2-hop questions (two documents), 3 rounds",
    ),
}


def register_envs() -> None:
    from agentenv.registry import register_multi

    for name, (entry_point, kwargs, description) in GAMES.items():
        register_multi(name, entry_point, kwargs=kwargs, family="games", description=description)
