"""``HouseholdEnv``: ALFWorld-style household tasks over :mod:`agentenv.envs.household.world`, in ALFWorld's words."""

from __future__ import annotations

from typing import Any

from agentenv.core import TextEnv
from agentenv.envs.household.scenes import LAMPS, OPENABLE
from agentenv.envs.household.world import (
    ALIASES,
    CLEAN,
    COOL,
    HEAT,
    LOOK,
    MAX_DISTRACTORS,
    MAX_RECEPTACLES,
    MIN_RECEPTACLES,
    PICK,
    PICK_TWO,
    SHORT_NAMES,
    TASK_TYPES,
    Command,
    State,
    World,
    admissible,
    apply,
    generate,
    goal_reached,
    initial_state,
    kind,
    parse,
    plan,
    why_not,
)
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards import REWARD_MODES, ProgressReward

INSTRUCTIONS = """You are in a household, among numbered receptacles (cabinet 1, fridge 1, countertop 2, ...) and \
objects (apple 1, mug 2, ...). Your task is stated at the end of the first observation ("Your task is to: ...").
"in/on {receptacle}" means in or on any receptacle of that type; "look at X under the desklamp" means holding an X \
where a desklamp stands, with that lamp switched on.
Commands (one per turn):
  look                              what is around you
  inventory                         what you are carrying
  go to (receptacle)                e.g. go to cabinet 3
  open (receptacle)                 close (receptacle)
  take (object) from (receptacle)   e.g. take apple 1 from countertop 2
  put (object) in/on (receptacle)   e.g. put apple 1 in/on fridge 1
  clean (object) with (receptacle)  with a sinkbasin
  heat (object) with (receptacle)   with a microwave
  cool (object) with (receptacle)   with a fridge
  use (object)                      switch a desklamp or floorlamp on or off
  examine (something)
You can carry one object at a time. Cabinets, drawers, fridges, microwaves and safes start closed: open them to \
see inside. A command that cannot be carried out gives "Nothing happens.\""""

HELP = """Available commands:
  look:                             look around your current location
  inventory:                        check your current inventory
  go to (receptacle):               move to a receptacle
  open (receptacle):                open a receptacle
  close (receptacle):               close a receptacle
  take (object) from (receptacle):  take an object from a receptacle
  put (object) in/on (receptacle):  place an object in or on a receptacle
  examine (something):              examine a receptacle or an object
  use (object):                     use an object
  heat (object) with (receptacle):  heat an object using a receptacle
  clean (object) with (receptacle): clean an object using a receptacle
  cool (object) with (receptacle):  cool an object using a receptacle"""

NOTHING_HAPPENS = "Nothing happens."

#: Progress milestones before the goal itself, per task type (the goal is always the last milestone).
SUBGOALS: dict[str, tuple[str, ...]] = {
    PICK: ("take",),
    LOOK: ("take", "light"),
    CLEAN: ("take", "clean"),
    HEAT: ("take", "heat"),
    COOL: ("take", "cool"),
    PICK_TWO: ("take", "place one", "take another"),
}


class HouseholdEnv(TextEnv):
    """ALFWorld's six household task types in seeded rooms, with ALFWorld's command grammar and goals.

    Knobs: ``task_types`` (a mixture; each task's type is drawn from its seed), ``nb_receptacles`` (receptacles in the
    room), ``nb_distractor_objects`` (objects not of the goal type). Reward modes: sparse / dense / ratio, where
    progress counts the task's milestones (e.g. heat: a goal object taken, heated, and placed).
    """

    family = "household"
    hack_module = "agentenv.envs.household.hacks"
    reward_modes = REWARD_MODES

    def __init__(
        self,
        *,
        task_types: tuple[str, ...] | list[str] | str = TASK_TYPES,
        nb_receptacles: int = 15,
        nb_distractor_objects: int = 10,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.task_types = _task_types(task_types)
        check_range("nb_receptacles", nb_receptacles, MIN_RECEPTACLES, MAX_RECEPTACLES, integer=True)
        check_range("nb_distractor_objects", nb_distractor_objects, 0, MAX_DISTRACTORS, integer=True)
        self.nb_receptacles, self.nb_distractor_objects = nb_receptacles, nb_distractor_objects
        self.instructions = INSTRUCTIONS
        self._rewarder = ProgressReward(self.reward_mode)
        self._world: World | None = None
        self._state: State | None = None
        self._milestones: set[str] = set()
        self._plan: tuple[tuple, list[str] | None] | None = None  # (state key, plan) of the last search, this task

    @property
    def task_tag(self) -> str:
        types = "all" if self.task_types == TASK_TYPES else "+".join(SHORT_NAMES[t] for t in self.task_types)
        return f"household-r{self.nb_receptacles}d{self.nb_distractor_objects}-{types}"

    # ---- TextEnv hooks --------------------------------------------------------------------------------
    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._world = generate(self.task_types, self.nb_receptacles, self.nb_distractor_objects, task_seed)
        self._state = initial_state(self._world)
        self._milestones = set()
        self._rewarder.reset()
        self._plan = None
        walkthrough = self.walkthrough()
        assert walkthrough is not None, "generated tasks are solvable by construction"
        observation = f"{self._look()}\n\nYour task is to: {self._world.task.text}"
        return observation, {"optimal_steps": len(walkthrough), "task_type": self._world.task.type}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:  # type: ignore[override]
        world, state = self._world, self._state
        assert world is not None and state is not None
        command = parse(action)
        if command is None:
            return self._finish(NOTHING_HAPPENS, invalid=True, reason="not a command of this game")
        reason = why_not(world, state, command)
        if reason is not None:
            return self._finish(NOTHING_HAPPENS, invalid=True, reason=reason)
        apply(world, state, command)
        self._update_milestones()
        return self._finish(self._feedback(command), invalid=False)

    def _step_invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        return self._finish(f"Invalid action: {reason}.", invalid=True)

    def _finish(
        self, feedback: str, *, invalid: bool, reason: str | None = None
    ) -> tuple[str, float, bool, dict[str, Any]]:
        world, state = self._world, self._state
        assert world is not None and state is not None
        success = goal_reached(world, state)
        progress = 1.0 if success else len(self._milestones) / (len(SUBGOALS[world.task.type]) + 1)
        reward = self._rewarder(progress, success=success, last_turn=self.turns_left == 0)
        info: dict[str, Any] = {
            "success": success,
            "invalid_action": invalid,
            "progress": progress,
            "reward_parts": {self.reward_mode: reward},
        }
        if reason is not None:
            info["invalid_reason"] = reason
        return feedback, reward, success, info

    def _update_milestones(self) -> None:
        world, state = self._world, self._state
        assert world is not None and state is not None
        task = world.task
        objects = [o for o in state.places if kind(o) == task.obj]
        held = state.held if state.held in objects else None
        placed = [o for o in objects if (where := state.places[o]) is not None and kind(where) == task.recep]
        reached = {
            "take": held is not None,
            "light": any(kind(o) == task.lamp and o in state.lit for o in state.places),
            "place one": bool(placed),
            "take another": held is not None and bool(placed),
        }
        if task.treatment:
            reached[task.treatment] = bool(state.treated(task.treatment) & set(objects))
        self._milestones |= {m for m in SUBGOALS[task.type] if reached[m]}

    # ---- ALFWorld's feedback --------------------------------------------------------------------------
    def _feedback(self, command: Command) -> str:
        state = self._state
        assert state is not None
        verb, obj, recep = command
        if verb == "look":
            return self._look()
        if verb == "inventory":
            held = state.held
            return "You are not carrying anything." if held is None else f"You are carrying: a {held}."
        if verb == "help":
            return HELP
        if verb == "examine":
            return self._describe(obj) if obj in self._world.receptacles else self._examine(obj)
        if verb == "go":
            return f"You arrive at {recep}. {self._describe(recep)}"
        if verb == "open":
            return f"You open the {recep}. {self._describe(recep)}"
        if verb == "close":
            return f"You close the {recep}."
        if verb == "take":
            return f"You pick up the {obj} from the {recep}."
        if verb == "put":
            return f"You put the {obj} in/on the {recep}."
        if verb == "use":
            return f"You turn {'on' if obj in state.lit else 'off'} the {obj}."
        return f"You {verb} the {obj} using the {recep}."  # clean / heat / cool

    def _look(self) -> str:
        world, state = self._world, self._state
        assert world is not None and state is not None
        if state.location is None:
            around = _listing(world.receptacles)
            return f"You are in the middle of a room. Looking quickly around you, you see {around}."
        return f"You are facing the {state.location}. Next to it, you see nothing."

    def _describe(self, receptacle: str) -> str:
        state = self._state
        assert state is not None
        contents = _listing(state.contents(receptacle))
        if kind(receptacle) not in OPENABLE:
            return f"On the {receptacle}, you see {contents}."
        if receptacle in state.opened:
            return f"The {receptacle} is open. In it, you see {contents}."
        return f"The {receptacle} is closed."

    def _examine(self, obj: str) -> str:
        state = self._state
        assert state is not None
        if kind(obj) in LAMPS:
            return f"This {obj} is {'on' if obj in state.lit else 'off'}."
        clean = "clean " if obj in state.clean else ""
        if obj in state.hot:
            return f"This is a hot {'and clean ' if clean else ''}{obj}."
        if obj in state.cool:
            return f"This is a {'cool and clean' if clean else 'cold'} {obj}."
        return f"This is a clean {obj}." if clean else f"There's nothing special about {obj}."

    # ---- planning -------------------------------------------------------------------------------------
    def walkthrough(self) -> list[str] | None:
        world, state = self._world, self._state
        if world is None or state is None or goal_reached(world, state):
            return None
        key = state.key()
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, plan(world, state))
        commands = self._plan[1]
        return None if commands is None else list(commands)

    def admissible_commands(self) -> list[str] | None:
        if self._world is None or self._state is None:
            return None
        return [str(c) for c in admissible(self._world, self._state)]


def _task_types(value: Any) -> tuple[str, ...]:
    """Validate ``task_types`` (names or aliases, as a list or one comma-separated string) into ALFWorld's names."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"task_types={value!r} must be a non-empty list of task types; choose from {list(ALIASES)}")
    for name in names:
        check_choice("task_types", name, ALIASES)
    chosen = {ALIASES[name] for name in names}
    return tuple(t for t in TASK_TYPES if t in chosen)


def _listing(names) -> str:
    """ALFWorld's lists: "a x", "a x, and a y", "a x, a y, and a z" (always "a"), or "nothing"."""
    items = [f"a {name}" for name in names]
    if len(items) <= 1:
        return items[0] if items else "nothing"
    return ", ".join(items[:-1]) + ", and " + items[-1]
