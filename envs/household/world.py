"""The household world: ALFWorld's text-mode rules over a seeded room of numbered receptacles and objects.

Pure data and rules, no prose (the env words the feedback): :class:`World` is generated from ``(task_types,
nb_receptacles, nb_distractor_objects, seed)``, :class:`State` is what changes during an episode, :func:`why_not`
and :func:`apply` are the preconditions and effects of ALFWorld's PDDL domain (``alfred.pddl``), :func:`goal_reached`
its six goals, and :func:`plan` finds a shortest solution by breadth-first search.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from agentenv.envs.household.scenes import (
    CAN_CONTAIN,
    CLEANABLE,
    COOLABLE,
    HEATABLE,
    LAMP_STANDS,
    LAMPS,
    OPENABLE,
    ROOMS,
)

PICK = "pick_and_place_simple"
LOOK = "look_at_obj_in_light"
CLEAN = "pick_clean_then_place_in_recep"
HEAT = "pick_heat_then_place_in_recep"
COOL = "pick_cool_then_place_in_recep"
PICK_TWO = "pick_two_obj_and_place"
#: ALFWorld's six task types, in ALFWorld's names.
TASK_TYPES = (PICK, LOOK, CLEAN, HEAT, COOL, PICK_TWO)
SHORT_NAMES = {PICK: "pick", LOOK: "look", CLEAN: "clean", HEAT: "heat", COOL: "cool", PICK_TWO: "picktwo"}
#: Every accepted spelling of a task type -> its ALFWorld name.
ALIASES: dict[str, str] = {
    **{t: t for t in TASK_TYPES},
    **{short: t for t, short in SHORT_NAMES.items()},
    "pick_two": PICK_TWO,
    **{t.removesuffix("_in_recep"): t for t in (CLEAN, HEAT, COOL)},
}

#: The rooms each task type is set in (ALFWorld's ``GOALS_VALID``).
TASK_ROOMS = {
    PICK: ("bathroom", "bedroom", "kitchen", "livingroom"),
    LOOK: ("bedroom", "livingroom"),
    CLEAN: ("bathroom", "kitchen"),
    HEAT: ("kitchen",),
    COOL: ("kitchen",),
    PICK_TWO: ("bathroom", "bedroom", "kitchen", "livingroom"),
}
#: Treatment verb -> (the receptacle type that does it, the object types it applies to).
TREATMENTS = {"clean": ("sinkbasin", CLEANABLE), "heat": ("microwave", HEATABLE), "cool": ("fridge", COOLABLE)}
TASK_TREATMENT = {CLEAN: "clean", HEAT: "heat", COOL: "cool"}
#: ALFWorld's goal descriptions; each task draws one.
TEMPLATES = {
    PICK: ("put a {obj} in {recep}.", "put some {obj} on {recep}."),
    LOOK: ("look at {obj} under the {lamp}.", "examine the {obj} with the {lamp}."),
    CLEAN: ("put a clean {obj} in {recep}.", "clean some {obj} and put it in {recep}."),
    HEAT: ("put a hot {obj} in {recep}.", "heat some {obj} and put it in {recep}."),
    COOL: ("put a cool {obj} in {recep}.", "cool some {obj} and put it in {recep}."),
    PICK_TWO: ("put two {obj} in {recep}.", "find two {obj} and put them in {recep}."),
}
#: How many objects of the goal type a task has (low, high inclusive); ALFWorld repeats them up to 4 times.
GOAL_OBJECTS = {PICK_TWO: (2, 4)}
DEFAULT_GOAL_OBJECTS = (1, 3)
MIN_RECEPTACLES, MAX_RECEPTACLES = 8, 30
MAX_DISTRACTORS = 40


def kind(name: str) -> str:
    """The type of a numbered thing: ``kind("cabinet 3") == "cabinet"``."""
    return name.rpartition(" ")[0]


@dataclass(frozen=True)
class Task:
    """What to achieve: ``type`` (ALFWorld's name), the object type, the target receptacle type or lamp type."""

    type: str
    obj: str
    recep: str | None
    lamp: str | None
    text: str

    @property
    def treatment(self) -> str | None:
        return TASK_TREATMENT.get(self.type)


@dataclass(frozen=True)
class World:
    """An immutable task: the room's receptacles (in ALFWorld's listing order), where each object starts."""

    room: str
    receptacles: tuple[str, ...]
    start: dict[str, str]  # object -> the receptacle it starts in/on (lamps included)
    task: Task

    def goal_objects(self) -> list[str]:
        return [o for o in self.start if kind(o) == self.task.obj]


@dataclass
class State:
    """What an episode changes: where the agent stands, where each object is, what is open, hot, cool, clean, lit."""

    places: dict[str, str | None]  # object -> receptacle; None while held
    location: str | None = None  # None: the middle of the room, where every episode starts
    opened: set[str] = field(default_factory=set)
    hot: set[str] = field(default_factory=set)
    cool: set[str] = field(default_factory=set)
    clean: set[str] = field(default_factory=set)
    lit: set[str] = field(default_factory=set)

    @property
    def held(self) -> str | None:
        return next((o for o, where in self.places.items() if where is None), None)

    def is_open(self, receptacle: str) -> bool:
        return kind(receptacle) not in OPENABLE or receptacle in self.opened

    def contents(self, receptacle: str) -> list[str]:
        return [o for o, where in self.places.items() if where == receptacle]

    def visible(self, obj: str) -> bool:
        where = self.places[obj]
        return where is None or (where == self.location and self.is_open(where))

    def treated(self, verb: str) -> set[str]:
        return {"clean": self.clean, "heat": self.hot, "cool": self.cool}[verb]

    def key(self) -> tuple:
        """A hashable snapshot (for search and for comparing states)."""
        sets = (self.opened, self.hot, self.cool, self.clean, self.lit)
        return (self.location, tuple(self.places.values()), *(tuple(sorted(s)) for s in sets))

    def copy(self) -> State:
        sets = (self.opened, self.hot, self.cool, self.clean, self.lit)
        return State(dict(self.places), self.location, *(set(s) for s in sets))


def initial_state(world: World) -> State:
    return State(places=dict(world.start))


# ---- commands -----------------------------------------------------------------------------------------------
class Command(NamedTuple):
    """One parsed command; ``str()`` gives it in ALFWorld's grammar."""

    verb: str  # look, inventory, help, examine, go, open, close, take, put, clean, heat, cool, use
    obj: str = ""  # object (or, for examine, any thing)
    recep: str = ""

    def __str__(self) -> str:
        if self.verb == "go":
            return f"go to {self.recep}"
        if self.verb in ("open", "close"):
            return f"{self.verb} {self.recep}"
        if self.verb == "take":
            return f"take {self.obj} from {self.recep}"
        if self.verb == "put":
            return f"put {self.obj} in/on {self.recep}"
        if self.verb in TREATMENTS:
            return f"{self.verb} {self.obj} with {self.recep}"
        if self.verb in ("use", "examine"):
            return f"{self.verb} {self.obj}"
        return self.verb


_NAME = r"([a-z]+(?: [0-9]+)?)"
_GRAMMAR: list[tuple[re.Pattern, str, str]] = [
    (re.compile(p.replace("NAME", _NAME)), verb, fields)
    for p, verb, fields in [
        (r"(?:look|l)", "look", ""),
        (r"(?:inventory|inv|i)", "inventory", ""),
        (r"help", "help", ""),
        (r"go ?to NAME", "go", "r"),
        (r"(open|close) NAME", "", "r"),
        (r"(?:take|pick up) NAME from NAME", "take", "or"),
        (r"(?:put|move|place) NAME (?:in/on|into|onto|in|on|to) NAME", "put", "or"),
        (r"(clean|heat|cool) NAME (?:with|using|in) NAME", "", "or"),
        (r"(?:use|toggle) NAME", "use", "o"),
        (r"(?:examine|x|look at) NAME", "examine", "o"),
    ]
]
_ARTICLES = re.compile(r"\b(?:the|a|an|some)\b")


def parse(text: str) -> Command | None:
    """Read a command (case, articles, extra spaces and a final full stop are ignored); ``None`` if unreadable."""
    words = " ".join(_ARTICLES.sub(" ", text.lower()).replace("\n", " ").strip().rstrip(".!").split())
    for pattern, verb, fields in _GRAMMAR:
        match = pattern.fullmatch(words)
        if match is None:
            continue
        groups = list(match.groups())
        verb = verb or groups.pop(0)
        named = dict(zip(fields, groups, strict=True))
        return Command(verb, named.get("o", ""), named.get("r", ""))
    return None


# ---- rules: ALFWorld's preconditions and effects ----------------------------------------------------------------
def why_not(world: World, state: State, command: Command) -> str | None:
    """Why ``command`` cannot be carried out in ``state`` (the agent just sees "Nothing happens."), else ``None``."""
    verb, obj, recep = command
    if verb in ("look", "inventory", "help"):
        return None
    if verb == "examine":
        if obj in world.receptacles:
            return None if state.location == obj else f"you are not at the {obj}"
        if obj in state.places:
            return None if state.visible(obj) else f"you cannot see the {obj} from here"
        return f"there is no {obj} here"
    if verb == "use":
        if kind(obj) not in LAMPS or obj not in state.places:
            return f"there is no switch on the {obj or 'nothing'}"
        return None if state.places[obj] == state.location else f"the {obj} is not where you are"
    if recep not in world.receptacles:
        return f"there is no receptacle called {recep!r}"
    if verb == "go":
        return None
    if state.location != recep:
        return f"you are not at the {recep}"
    if verb in ("open", "close"):
        if kind(recep) not in OPENABLE:
            return f"the {recep} cannot be opened or closed"
        if (recep in state.opened) == (verb == "open"):
            return f"the {recep} is already {'open' if verb == 'open' else 'closed'}"
        return None
    if obj not in state.places:
        return f"there is no object called {obj!r}"
    if verb == "take":
        if state.places[obj] != recep:
            return f"the {obj} is not in/on the {recep}"
        if not state.is_open(recep):
            return f"the {recep} is closed"
        if kind(obj) in LAMPS:
            return f"the {obj} cannot be picked up"
        held = state.held
        return None if held is None else f"you are already carrying the {held}; you can carry one object"
    if state.places[obj] is not None:
        return f"you are not carrying the {obj}"
    if verb == "put":
        if not state.is_open(recep):
            return f"the {recep} is closed"
        return None if kind(obj) in CAN_CONTAIN[kind(recep)] else f"the {obj} does not go in/on the {recep}"
    if verb in TREATMENTS:
        appliance, affords = TREATMENTS[verb]
        if kind(recep) != appliance:
            return f"you can only {verb} things with a {appliance}"
        return None if kind(obj) in affords else f"the {obj} cannot be {verb}ed"
    return f"unknown verb {verb!r}"


def apply(world: World, state: State, command: Command) -> None:
    """Carry out a command that :func:`why_not` allows."""
    verb, obj, recep = command
    if verb == "go":
        state.location = recep
    elif verb == "open":
        state.opened.add(recep)
    elif verb == "close":
        state.opened.discard(recep)
    elif verb == "take":
        state.places[obj] = None
    elif verb == "put":
        state.places[obj] = recep
    elif verb == "heat":
        state.hot.add(obj)
        state.cool.discard(obj)
    elif verb == "cool":
        state.cool.add(obj)
        state.hot.discard(obj)
    elif verb == "clean":
        state.clean.add(obj)
    elif verb == "use":
        state.lit ^= {obj}


def admissible(world: World, state: State) -> list[Command]:
    """Every command that can be carried out now (ALFWorld's admissible commands), sorted by their text."""
    held, here = state.held, state.location
    options = [Command("look"), Command("inventory")]
    options += [Command("go", recep=r) for r in world.receptacles]
    if held is not None:
        options.append(Command("examine", held))
    if here is not None:
        options += [Command("examine", here), Command("open", recep=here), Command("close", recep=here)]
        for obj in state.contents(here):
            options += [Command("examine", obj), Command("take", obj, here), Command("use", obj)]
        if held is not None:
            options += [Command(verb, held, here) for verb in ("put", *TREATMENTS)]
    return sorted((c for c in options if why_not(world, state, c) is None), key=str)


def goal_reached(world: World, state: State) -> bool:
    """ALFWorld's goal conditions; a target "recep" is any receptacle of that type."""
    task = world.task
    objects = [o for o in state.places if kind(o) == task.obj]
    if task.type == LOOK:
        return state.held in objects and any(
            kind(o) == task.lamp and o in state.lit and where == state.location for o, where in state.places.items()
        )
    done = state.treated(task.treatment) if task.treatment else None
    placed = [
        where
        for o in objects
        if (where := state.places[o]) is not None and kind(where) == task.recep and (done is None or o in done)
    ]
    if task.type == PICK_TWO:
        return any(placed.count(r) >= 2 for r in placed)
    return bool(placed)


# ---- generator ----------------------------------------------------------------------------------------------
def generate(task_types: tuple[str, ...], nb_receptacles: int, nb_distractor_objects: int, seed: int) -> World:
    """A task of one of ``task_types`` (drawn from the seed) in a room of ``nb_receptacles`` receptacles.

    The objects of the goal type never start in/on a receptacle of the target type, so no task starts solved.
    """
    rng = np.random.default_rng(seed)

    def pick(options):
        options = sorted(options)
        return options[int(rng.integers(len(options)))]

    task_type = task_types[int(rng.integers(len(task_types)))]
    room = ROOMS[pick(TASK_ROOMS[task_type])]
    types = set(room.receptacles)
    treatment = TASK_TREATMENT.get(task_type)
    excluded = {TREATMENTS[treatment][0], "bathtubbasin"} if treatment else set()

    def sources(obj: str, target: str | None) -> list[str]:
        return [t for t in types if t != target and obj in CAN_CONTAIN[t]]

    def targets(obj: str) -> list[str]:
        return [t for t in types - excluded if obj in CAN_CONTAIN[t] and sources(obj, t)]

    lamp = target = None
    if task_type == LOOK:
        lamp = pick(LAMPS)
        obj = pick(o for o in room.objects if sources(o, None))
    else:
        affords = TREATMENTS[treatment][1] if treatment else None
        obj = pick(o for o in room.objects if (affords is None or o in affords) and targets(o))
        target = pick(targets(obj))

    counts = {t: low for t, (low, _) in room.receptacles.items()}

    def require(options: list[str]) -> None:
        if not any(counts[t] for t in options):
            counts[pick(options)] = 1

    if target is not None:
        require([target])
    require(sources(obj, target))
    if lamp is not None:
        require([t for t in LAMP_STANDS[lamp] if t in types])
    while sum(counts.values()) < nb_receptacles:
        counts[pick(t for t in types if counts[t] < room.receptacles[t][1])] += 1
    assert sum(counts.values()) == nb_receptacles, "MIN_RECEPTACLES leaves room for what every task requires"
    receptacles = tuple(f"{t} {i}" for t in sorted(counts) for i in range(counts[t], 0, -1))

    def somewhere(obj: str, avoid: str | None = None) -> str:
        return pick(r for r in receptacles if kind(r) != avoid and obj in CAN_CONTAIN[kind(r)])

    low, high = GOAL_OBJECTS.get(task_type, DEFAULT_GOAL_OBJECTS)
    placed = [(f"{obj} {i}", somewhere(obj, avoid=target)) for i in range(1, int(rng.integers(low, high + 1)) + 1)]
    numbers: dict[str, int] = {}
    others = [o for o in room.objects if o != obj and any(o in CAN_CONTAIN[kind(r)] for r in receptacles)]
    for _ in range(nb_distractor_objects):
        other = pick(others)
        numbers[other] = numbers.get(other, 0) + 1
        placed.append((f"{other} {numbers[other]}", somewhere(other)))
    for lamp_type in LAMPS:
        stands = [r for r in receptacles if kind(r) in LAMP_STANDS[lamp_type]]
        wanted = lamp_type == lamp or (room.name in TASK_ROOMS[LOOK] and rng.random() < 0.5)
        if stands and wanted:
            placed.append((f"{lamp_type} 1", pick(stands)))
    start = {placed[i][0]: placed[i][1] for i in rng.permutation(len(placed))}
    text = TEMPLATES[task_type][int(rng.integers(2))].format(obj=obj, recep=target, lamp=lamp)
    return World(room.name, receptacles, start, Task(task_type, obj, target, lamp, text))


# ---- planner ------------------------------------------------------------------------------------------------
def plan(world: World, state: State) -> list[str] | None:
    """A shortest command list from ``state`` to the goal; ``None`` if the goal is out of reach.

    Breadth-first search over (location, held object, which receptacles are open, where each object of the goal type
    is and whether it is treated, which lamps are lit), restricted to what can matter. Left out, because they never
    shorten a solution: distractor objects (except one already held, which may be put down), receptacles that hold
    nothing relevant, closing, opening a receptacle with nothing to take from it or put into it right then,
    treating an object twice, and the informational commands (look, examine, inventory).
    """
    if goal_reached(world, state):
        return []
    planner = _Planner(world, state)
    return _shortest_path(planner.start(state), planner.solved, planner.moves)


def _shortest_path(start: tuple, solved: Any, moves: Any) -> list[str] | None:
    """Breadth-first search from ``start``: the commands of a shortest path to a ``solved`` node, or ``None``."""
    previous: dict[tuple, tuple[tuple, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if solved(node):
            commands = []
            while previous[node] is not None:
                node, command = previous[node]  # type: ignore[misc]
                commands.append(command)
            return commands[::-1]
        for command, nxt in moves(node):
            if nxt not in previous:
                previous[nxt] = (node, command)
                queue.append(nxt)
    return None


class _Planner:
    """:func:`plan`'s search space: the relevant receptacles (indexed), the goal objects and lamps, and the
    moves between compact nodes ``(location, holding, opened mask, places, treated mask, lit mask)``."""

    def __init__(self, world: World, state: State):
        self.task = task = world.task
        self.goal_objects = [o for o in state.places if kind(o) == task.obj]
        self.lamps = [o for o in state.places if task.lamp is not None and kind(o) == task.lamp]
        self.treatment = treatment = task.treatment
        held = state.held
        self.extra = extra = held if held is not None and held not in self.goal_objects else None
        relevant = {state.places[o] for o in self.goal_objects + self.lamps} | {state.location}
        relevant |= {r for r in world.receptacles if kind(r) == task.recep}
        if treatment:
            relevant |= {r for r in world.receptacles if kind(r) == TREATMENTS[treatment][0]}
        if extra is not None:
            relevant |= {r for r in world.receptacles if kind(extra) in CAN_CONTAIN[kind(r)]}
        self.recs = [r for r in world.receptacles if r in relevant]
        self.index = {r: i for i, r in enumerate(self.recs)}
        self.types = [kind(r) for r in self.recs]
        self.n = n = len(self.goal_objects)
        self.holdable = [set(CAN_CONTAIN[t]) for t in self.types]  # object types each receptacle takes
        self.held_kind = {i: task.obj for i in range(n)} | ({n: kind(extra)} if extra is not None else {})
        self.lamp_at = [self.index[state.places[lamp]] for lamp in self.lamps]
        self.appliance = TREATMENTS[treatment][0] if treatment else None
        self.targets = {i for i, t in enumerate(self.types) if t == task.recep}

    def start(self, state: State) -> tuple:
        def mask(items: Any) -> int:
            return sum(1 << i for i, item in enumerate(items) if item)

        held, goal_objects, n = state.held, self.goal_objects, self.n
        return (
            -1 if state.location is None else self.index[state.location],
            -1 if held is None else (goal_objects.index(held) if self.extra is None else n),
            mask(r in state.opened for r in self.recs),
            tuple(-1 if state.places[o] is None else self.index[state.places[o]] for o in goal_objects),
            mask(o in state.treated(self.treatment) for o in goal_objects) if self.treatment else (1 << n) - 1,
            mask(lamp in state.lit for lamp in self.lamps),
        )

    def solved(self, node: tuple) -> bool:
        loc, holding, _, places, treated, lit = node
        if self.task.type == LOOK:
            return 0 <= holding < self.n and any(lit >> k & 1 and at == loc for k, at in enumerate(self.lamp_at))
        done = [p for i, p in enumerate(places) if p in self.targets and treated >> i & 1]
        if self.task.type == PICK_TWO:
            return any(done.count(p) >= 2 for p in done)
        return bool(done)

    def moves(self, node: tuple) -> Iterator[tuple[str, tuple]]:
        loc, holding, opened, places, treated, lit = node
        recs, n = self.recs, self.n
        for j, r in enumerate(recs):
            if j != loc:
                yield f"go to {r}", (j, holding, opened, places, treated, lit)
        if loc < 0:
            return
        here = recs[loc]
        is_open = self.types[loc] not in OPENABLE or opened >> loc & 1
        fits = holding >= 0 and self.held_kind[holding] in self.holdable[loc]
        if not is_open and ((holding < 0 and loc in places) or fits):
            yield f"open {here}", (loc, holding, opened | 1 << loc, places, treated, lit)
        if is_open and holding < 0:
            for i, p in enumerate(places):
                if p == loc:
                    taken = (*places[:i], -1, *places[i + 1 :])
                    yield f"take {self.goal_objects[i]} from {here}", (loc, i, opened, taken, treated, lit)
        if is_open and fits:
            name = self.goal_objects[holding] if holding < n else self.extra
            put = places if holding == n else (*places[:holding], loc, *places[holding + 1 :])
            yield f"put {name} in/on {here}", (loc, -1, opened, put, treated, lit)
        if 0 <= holding < n and self.types[loc] == self.appliance and not treated >> holding & 1:
            done = treated | 1 << holding
            yield (
                f"{self.treatment} {self.goal_objects[holding]} with {here}",
                (loc, holding, opened, places, done, lit),
            )
        for k, at in enumerate(self.lamp_at):
            if at == loc:
                yield f"use {self.lamps[k]}", (loc, holding, opened, places, treated, lit ^ 1 << k)
