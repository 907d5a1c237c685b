"""The Key-Door world: a seeded grid of rooms, locked doors on the way to a treasure, keys behind earlier doors.

Pure data and rules, no text: :class:`World` is generated from ``(size, nb_keys, nb_distractors, seed)``,
:class:`State` is what changes during an episode, and :func:`plan` finds a shortest solution by breadth-first
search over (room, keys held, doors unlocked).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

Cell = tuple[int, int]
DIRECTIONS: dict[str, Cell] = {"north": (-1, 0), "south": (1, 0), "east": (0, 1), "west": (0, -1)}
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white")
DECOY_COLORS = ("silver", "bronze", "black")
JUNK = (
    "rubber duck",
    "old map",
    "brass lamp",
    "wooden spoon",
    "torn book",
    "clay pot",
    "feather",
    "tin cup",
    "rusty nail",
    "wool scarf",
    "glass marble",
    "candle stub",
)
ADJECTIVES = (
    "dusty",
    "quiet",
    "narrow",
    "bright",
    "damp",
    "cold",
    "cozy",
    "grand",
    "dim",
    "musty",
    "sunny",
    "tiled",
)
NOUNS = ("hall", "library", "kitchen", "cellar", "study", "gallery", "pantry", "chapel", "workshop", "attic")
TREASURE = "golden coin"


def door_key(a: Cell, b: Cell) -> frozenset[Cell]:
    return frozenset((a, b))


@dataclass(frozen=True)
class World:
    """An immutable task: rooms, passages, locked doors (door -> colour), and where everything starts."""

    size: int
    names: dict[Cell, str]
    passages: frozenset[frozenset[Cell]]
    doors: dict[frozenset[Cell], str]  # locked door -> colour of the key that opens it
    start: Cell
    treasure: Cell
    items: dict[str, Cell]  # item name -> starting room (keys, decoys, junk)

    def neighbours(self, cell: Cell) -> dict[str, Cell]:
        return neighbours(cell, self.passages)

    @property
    def key_names(self) -> list[str]:
        return [f"{color} key" for color in self.doors.values()]


@dataclass
class State:
    """What an episode changes: where the agent is, what lies where, which doors are open."""

    room: Cell
    items: dict[str, Cell | None]  # None = carried
    unlocked: set[frozenset[Cell]] = field(default_factory=set)
    done: bool = False

    @property
    def carried(self) -> list[str]:
        return sorted(name for name, where in self.items.items() if where is None)

    def here(self) -> list[str]:
        return sorted(name for name, where in self.items.items() if where == self.room)


def generate(size: int, nb_keys: int, nb_distractors: int, seed: int) -> World:
    """A solvable world; every key is needed, and each lies before the door it opens."""
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(size) for c in range(size)]
    passages = _maze(size, rng)
    start = cells[int(rng.integers(len(cells)))]
    parents = _bfs_tree(start, passages)
    depth = {cell: _depth(cell, parents) for cell in cells}
    far = max(depth.values())
    farthest = sorted(c for c in cells if depth[c] == far)
    treasure = farthest[int(rng.integers(len(farthest)))]

    path = [treasure]
    while path[-1] != start:
        path.append(parents[path[-1]])
    path.reverse()
    edges = [door_key(a, b) for a, b in pairwise(path)]
    chosen = sorted(rng.choice(len(edges), size=nb_keys, replace=False).tolist()) if nb_keys else []
    colors = [COLORS[i] for i in rng.permutation(len(COLORS))[:nb_keys]]
    doors = {edges[i]: color for i, color in zip(chosen, colors, strict=True)}

    items: dict[str, Cell] = {}
    ordered_doors = [edges[i] for i in chosen]
    for k, color in enumerate(colors):
        reachable = _reachable(start, passages, blocked=set(ordered_doors[k:]))
        candidates = sorted(reachable - {start}) or sorted(reachable)
        items[f"{color} key"] = candidates[int(rng.integers(len(candidates)))]
    junk = [JUNK[i] for i in rng.permutation(len(JUNK))]
    decoys = [f"{c} key" for c in DECOY_COLORS]
    for j in range(nb_distractors):
        name = decoys[j // 2] if j % 2 == 1 and j // 2 < len(decoys) else junk.pop()
        items[name] = cells[int(rng.integers(len(cells)))]

    names = {}
    pairs = [(a, n) for a in ADJECTIVES for n in NOUNS]
    for cell, i in zip(cells, rng.permutation(len(pairs))[: len(cells)], strict=True):
        adjective, noun = pairs[i]
        names[cell] = f"{adjective} {noun}"
    return World(size, names, passages, doors, start, treasure, items)


def initial_state(world: World) -> State:
    return State(room=world.start, items=dict(world.items))


def plan(world: World, state: State) -> list[str] | None:
    """A shortest command list from ``state`` to taking the treasure; ``None`` if it is out of reach.

    Search state: (room, keys carried, doors unlocked). Keys lying elsewhere stay where they are — dropping a
    key never shortens a solution, so the planner never drops.
    """
    door_list = sorted(world.doors, key=lambda d: world.doors[d])
    key_of = {door: f"{world.doors[door]} key" for door in door_list}
    keys = [key_of[d] for d in door_list]
    held0 = sum(1 << i for i, k in enumerate(keys) if state.items.get(k, "gone") is None)
    open0 = sum(1 << i for i, d in enumerate(door_list) if d in state.unlocked)
    start = (state.room, held0, open0)
    previous: dict[tuple, tuple[tuple, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        room, held, opened = node
        if room == world.treasure:
            commands = [f"take {TREASURE}"]
            while previous[node] is not None:
                node, command = previous[node]  # type: ignore[misc]
                commands.append(command)
            return commands[::-1]
        moves = []
        for direction, other in world.neighbours(room).items():
            door = door_key(room, other)
            if door in world.doors:
                i = door_list.index(door)
                if not opened >> i & 1:
                    if held >> i & 1:
                        moves.append(((room, held, opened | 1 << i), f"unlock {direction} door with {keys[i]}"))
                    continue
            moves.append(((other, held, opened), f"go {direction}"))
        for i, key in enumerate(keys):
            if not held >> i & 1 and state.items.get(key) == room:
                moves.append(((room, held | 1 << i, opened), f"take {key}"))
        for nxt, command in moves:
            if nxt not in previous:
                previous[nxt] = (node, command)
                queue.append(nxt)
    return None


def _maze(size: int, rng: np.random.Generator) -> frozenset[frozenset[Cell]]:
    """A perfect maze (spanning tree of the grid) by randomised depth-first search."""
    seen = {(0, 0)}
    stack = [(0, 0)]
    passages = set()
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc)
            for dr, dc in DIRECTIONS.values()
            if 0 <= r + dr < size and 0 <= c + dc < size and (r + dr, c + dc) not in seen
        ]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        passages.add(door_key((r, c), nxt))
        seen.add(nxt)
        stack.append(nxt)
    return frozenset(passages)


def neighbours(cell: Cell, passages: frozenset[frozenset[Cell]]) -> dict[str, Cell]:
    """Rooms joined to ``cell`` by a passage, by compass direction."""
    r, c = cell
    out = {}
    for name, (dr, dc) in DIRECTIONS.items():
        other = (r + dr, c + dc)
        if door_key(cell, other) in passages:
            out[name] = other
    return out


def _bfs_tree(start: Cell, passages: frozenset[frozenset[Cell]]) -> dict[Cell, Cell]:
    parents: dict[Cell, Cell] = {start: start}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for other in neighbours(cell, passages).values():
            if other not in parents:
                parents[other] = cell
                queue.append(other)
    return parents


def _depth(cell: Cell, parents: dict[Cell, Cell]) -> int:
    d = 0
    while parents[cell] != cell:
        cell, d = parents[cell], d + 1
    return d


def _reachable(start: Cell, passages: frozenset[frozenset[Cell]], blocked: set) -> set[Cell]:
    seen = {start}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for other in neighbours(cell, passages).values():
            if other not in seen and door_key(cell, other) not in blocked:
                seen.add(other)
                queue.append(other)
    return seen
