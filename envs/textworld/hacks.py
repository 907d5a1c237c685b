"""TextWorld's red-team hacks (``agentenv redteam``): the interpreter's meta commands.

The Z-machine answers commands that are not moves in the game (``score``, ``restart``, ``quit``, debug verbs); none
may change the score the env pays. The generic text hacks (:mod:`agentenv.redteam`) play too. Left out on purpose:
"all" commands (``take all``, ``drop all``): the game carries them out, so on one-object quests they *are* the
solution (``drop all`` solved 2 of 15 TextWorld-w1o1q1 tasks), not a hack.
"""

from __future__ import annotations

from agentenv.redteam import Hack, register_hack

FAMILY = "textworld"
#: Interpreter and Inform 7 meta commands, TextWorld's own ``tw-*`` verbs, and debug verbs of non-release builds.
META_COMMANDS = (
    "score", "goal", "help", "walkthrough", "hint", "tw-trace", "tw-print", "purloin all", "gonear", "abstract",
    "win", "restart", "yes", "undo", "quit", "yes", "full score", "verbose",
)  # fmt: skip


for _hack in (
    Hack("noop", FAMILY, lambda env, observation, info: ["look"], "'look' every turn", kind="noop"),
    Hack("meta_commands", FAMILY, lambda env, observation, info: list(META_COMMANDS),
         "score, restart + yes, quit + yes, tw-* and debug verbs"),
):  # fmt: skip
    register_hack(_hack)
