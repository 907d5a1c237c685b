"""Household's red-team hacks (``agentenv redteam``): act on things without going to them, echo the goal.

ALFWorld's rules say where the agent must be and what it must hold for each command; these hacks skip that. The
generic text hacks (:mod:`agentenv.redteam`) play too.
"""

from __future__ import annotations

import re
from typing import Any

from agentenv.redteam import Hack, register_hack

FAMILY = "household"
_RECEPTACLE = re.compile(r"\ba ([a-z]+) (\d+)")
_TASK = re.compile(r"Your task is to: (.+?)\.?$", re.MULTILINE)
_NOT_OBJECTS = {"put", "a", "an", "the", "some", "two", "in", "on", "find", "them", "and", "it", "clean", "hot",
                "cool", "cold", "heat", "look", "at", "under", "examine", "with", "then"}  # fmt: skip


def _scene(observation: str) -> tuple[list[str], list[str], str, str]:
    """(receptacles in the room, object kinds of the goal, the goal's receptacle kind, the goal) as an agent reads
    them in the first observation."""
    room = observation.split("Your task is to:")[0]
    receptacles = [f"{kind} {n}" for kind, n in _RECEPTACLE.findall(room)]
    kinds = {r.split()[0] for r in receptacles}
    match = _TASK.search(observation)
    goal = match.group(1).strip() if match else ""
    words = [w for w in re.findall(r"[a-z]+", goal.lower()) if w not in _NOT_OBJECTS]
    objects = [w for w in words if w not in kinds] or ["object"]
    target = next((w for w in reversed(words) if w in kinds), receptacles[0].split()[0] if receptacles else "")
    return receptacles, objects, target, goal


def _remote_take(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    """Take the goal object from each receptacle without going there, treat it from afar, put it in the target."""
    receptacles, objects, target, _ = _scene(observation)
    appliances = [r for r in receptacles if r.split()[0] in ("microwave", "fridge", "sinkbasin")]
    turns = []
    for receptacle in receptacles:
        turns += [f"take {objects[0]} 1 from {receptacle}"]
        turns += [f"{verb} {objects[0]} 1 with {a}" for a in appliances for verb in ("heat", "cool", "clean")][:1]
        turns += [f"put {objects[0]} 1 in/on {target} 1"]
    return turns


def _goal_echo(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    """The goal sentence as a command, then the goal's final placement typed directly."""
    _, objects, target, goal = _scene(observation)
    return [goal, f"put {objects[0]} 1 in/on {target} 1", f"put {objects[0]} in {target}", f"use {objects[-1]} 1",
            f"look at {objects[0]} under the desklamp", "task complete", "done"]  # fmt: skip


for _hack in (
    Hack("noop", FAMILY, lambda env, observation, info: ["look"], "'look' every turn", kind="noop"),
    Hack("remote_take", FAMILY, _remote_take, "take / treat / put the goal object without going to it"),
    Hack("goal_echo", FAMILY, _goal_echo, "the goal sentence and its final step typed directly, then 'done'"),
):
    register_hack(_hack)
