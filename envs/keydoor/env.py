"""``KeyDoorEnv``: the text game over :mod:`agentenv.envs.keydoor.world`."""

from __future__ import annotations

import re
from typing import Any

from agentenv.core import TextEnv
from agentenv.envs.keydoor.world import (
    DIRECTIONS,
    TREASURE,
    State,
    World,
    door_key,
    generate,
    initial_state,
    plan,
)
from agentenv.errors import check_range
from agentenv.rewards import REWARD_MODES, ProgressReward

INSTRUCTIONS = """You are exploring a building of rooms laid out on a grid. Your goal: find the {treasure} \
and take it.
Some doors are locked; a locked door opens with the key of its colour, which lies somewhere you can already \
reach. Other objects are of no use.
Commands (one per turn): go north|south|east|west, take <object>, drop <object>, \
unlock <direction> door with <key>, look, inventory."""

_ARTICLES = re.compile(r"\b(the|a|an)\b")
_SHORT = {"n": "north", "s": "south", "e": "east", "w": "west"}


class KeyDoorEnv(TextEnv):
    """Find and take the golden coin in a seeded grid of rooms; locked doors need keys of their colour.

    Knobs: ``size`` (rooms per side), ``nb_keys`` (locked doors on the way, each needing its key),
    ``nb_distractors`` (useless objects and decoy keys). Reward modes: sparse / dense / ratio, where progress
    counts milestones: each needed key taken, each door unlocked, the coin taken.
    """

    family = "keydoor"
    hack_module = "agentenv.envs.keydoor.hacks"
    reward_modes = REWARD_MODES

    def __init__(self, *, size: int = 3, nb_keys: int = 1, nb_distractors: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        check_range("size", size, 2, 8, integer=True)
        check_range("nb_keys", nb_keys, 0, size - 1, integer=True)
        check_range("nb_distractors", nb_distractors, 0, 12, integer=True)
        self.size, self.nb_keys, self.nb_distractors = size, nb_keys, nb_distractors
        self.instructions = INSTRUCTIONS.format(treasure=TREASURE)
        self._rewarder = ProgressReward(self.reward_mode)
        self._world: World | None = None
        self._state: State | None = None
        self._milestones: set[str] = set()

    @property
    def task_tag(self) -> str:
        return f"keydoor-s{self.size}k{self.nb_keys}d{self.nb_distractors}"

    # ---- TextEnv hooks --------------------------------------------------------------------------------
    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._world = generate(self.size, self.nb_keys, self.nb_distractors, task_seed)
        self._state = initial_state(self._world)
        self._milestones = set()
        self._rewarder.reset()
        walkthrough = plan(self._world, self._state)
        assert walkthrough is not None, "generated worlds are solvable by construction"
        observation = f"Goal: find the {TREASURE} and take it.\n\n{self._describe_room()}"
        return observation, {"optimal_steps": len(walkthrough)}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:  # type: ignore[override]
        feedback, valid = self._apply(action)
        return self._finish(feedback, invalid=not valid)

    def _step_invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        return self._finish(f"Invalid action: {reason}.", invalid=True)

    # ---- game rules -----------------------------------------------------------------------------------
    def _apply(self, command: str) -> tuple[str, bool]:
        """Play one command; returns (feedback, whether it had an effect or gave information)."""
        world, state = self._world, self._state
        assert world is not None and state is not None
        words = _ARTICLES.sub(" ", command.lower().replace(",", " ").rstrip(".!")).split()
        if not words:
            return "I did not understand that.", False
        verb, rest = words[0], " ".join(words[1:])
        if verb in _SHORT and not rest:
            verb, rest = "go", _SHORT[verb]
        elif verb in DIRECTIONS and not rest:
            verb, rest = "go", verb
        rest = _SHORT.get(rest, rest)

        if verb in ("go", "move", "walk"):
            exits = world.neighbours(state.room)
            if rest not in exits:
                return f"You cannot go {rest or 'nowhere'} from here.", False
            door = door_key(state.room, exits[rest])
            if door in world.doors and door not in state.unlocked:
                return f"The {world.doors[door]} door to the {rest} is locked.", False
            state.room = exits[rest]
            return f"You go {rest}.", True
        if verb in ("take", "get", "grab") or (verb == "pick" and rest.startswith("up ")):
            item = rest[3:] if verb == "pick" else rest
            if item == TREASURE and state.room == world.treasure:
                state.done = True
                self._milestones.add("treasure")
                return f"You take the {TREASURE}. You win!", True
            if state.items.get(item, "absent") != state.room:
                return f"There is no {item or 'such thing'} here.", False
            state.items[item] = None
            if item in world.key_names:
                self._milestones.add(f"take {item}")
            return f"You take the {item}.", True
        if verb == "drop":
            if state.items.get(rest, "absent") is not None:
                return f"You are not carrying {rest or 'that'}.", False
            state.items[rest] = state.room
            return f"You drop the {rest}.", True
        if verb in ("unlock", "open"):
            return self._unlock(rest)
        if verb in ("look", "l"):
            return "You look around.", True
        if verb in ("inventory", "i", "inv"):
            return f"You are carrying: {_listing(state.carried)}.", True
        return f"I do not know the command {verb!r}.", False

    def _unlock(self, rest: str) -> tuple[str, bool]:
        world, state = self._world, self._state
        assert world is not None and state is not None
        target, _, key = rest.partition(" with ")
        direction = _SHORT.get(target.replace("door", "").strip(), target.replace("door", "").strip())
        exits = world.neighbours(state.room)
        door = door_key(state.room, exits[direction]) if direction in exits else None
        if door is None or door not in world.doors or door in state.unlocked:
            return f"There is no locked door to the {direction or '?'}.", False
        needed = f"{world.doors[door]} key"
        key = key.strip() or needed  # "unlock north door" uses the right key when carried
        if state.items.get(key, "absent") is not None:
            return f"You are not carrying {key}.", False
        if key != needed:
            return f"The {key} does not fit the {world.doors[door]} door.", False
        state.unlocked.add(door)
        self._milestones.add(f"unlock {world.doors[door]}")
        return f"You unlock the {world.doors[door]} door to the {direction}.", True

    def _finish(self, feedback: str, *, invalid: bool) -> tuple[str, float, bool, dict[str, Any]]:
        assert self._state is not None
        success = self._state.done
        progress = len(self._milestones) / (2 * self.nb_keys + 1)
        reward = self._rewarder(progress, success=success, last_turn=self.turns_left == 0)
        info = {
            "success": success,
            "invalid_action": invalid,
            "progress": progress,
            "reward_parts": {self.reward_mode: reward},
        }
        observation = feedback if success else f"{feedback}\n\n{self._describe_room()}"
        return observation, reward, success, info

    def _describe_room(self) -> str:
        world, state = self._world, self._state
        assert world is not None and state is not None
        exits = []
        for direction, other in world.neighbours(state.room).items():
            door = door_key(state.room, other)
            locked = door in world.doors and door not in state.unlocked
            exits.append(f"{direction} (locked {world.doors[door]} door)" if locked else direction)
        things = state.here() + ([TREASURE] if state.room == world.treasure else [])
        return (
            f"-= {world.names[state.room].title()} =-\n"
            f"Exits: {', '.join(exits)}.\n"
            f"You see: {_listing(things)}.\n"
            f"You are carrying: {_listing(state.carried)}."
        )

    # ---- planning -------------------------------------------------------------------------------------
    def walkthrough(self) -> list[str] | None:
        if self._world is None or self._state is None or self._state.done:
            return None
        return plan(self._world, self._state)

    def admissible_commands(self) -> list[str] | None:
        world, state = self._world, self._state
        if world is None or state is None:
            return None
        commands = ["look", "inventory"]
        for direction, other in world.neighbours(state.room).items():
            door = door_key(state.room, other)
            if door in world.doors and door not in state.unlocked:
                key = f"{world.doors[door]} key"
                if key in state.carried:
                    commands.append(f"unlock {direction} door with {key}")
            else:
                commands.append(f"go {direction}")
        commands += [f"take {item}" for item in state.here()]
        if state.room == world.treasure:
            commands.append(f"take {TREASURE}")
        commands += [f"drop {item}" for item in state.carried]
        return sorted(commands)


def _listing(names: list[str]) -> str:
    return ", ".join(f"a {n}" for n in names) if names else "nothing"
