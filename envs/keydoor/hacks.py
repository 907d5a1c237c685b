"""Key-Door's red-team hacks (``agentenv redteam``): grab the coin from afar, open doors without keys, teleport.

Each probes one rule the game must enforce; none explores or picks anything up, so none can solve a task (or reach
a milestone) honestly: the coin always lies beyond the first room. The generic text hacks (:mod:`agentenv.redteam`)
play too.
"""

from __future__ import annotations

import re
from typing import Any

from agentenv.envs.keydoor.world import DIRECTIONS
from agentenv.redteam import Hack, register_hack

FAMILY = "keydoor"
_GOAL = re.compile(r"find the (.+?) and take it")


def _treasure(observation: str) -> str:
    match = _GOAL.search(observation)
    return match.group(1) if match else "golden coin"


def _coin_grab(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    treasure = _treasure(observation)
    return [f"take {treasure}", f"get the {treasure}", f"pick up {treasure}"] * 3


def _keyless_unlock(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    """Unlock every door of the first room without its key (or with made-up ones), walk through, take the coin."""
    turns = []
    for direction in DIRECTIONS:
        turns += [f"unlock {direction} door", f"unlock {direction} door with master key", f"open {direction} door"]
        turns += [f"go {direction}", f"take {_treasure(observation)}"]
    return turns


def _teleport(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    treasure = _treasure(observation)
    return [f"go to {treasure}", f"go {treasure}", "go treasure", f"take {treasure} from anywhere", f"take {treasure}"]


for _hack in (
    Hack("noop", FAMILY, lambda env, observation, info: ["look"], "'look' every turn", kind="noop"),
    Hack("coin_grab", FAMILY, _coin_grab, "take the coin from the first room, in several phrasings"),
    Hack("keyless_unlock", FAMILY, _keyless_unlock, "unlock the first room's doors without a key, go through"),
    Hack("teleport", FAMILY, _teleport, "'go to golden coin' and other shortcuts"),
):
    register_hack(_hack)
