"""TextWorld games generated on demand from (kind, knobs, seed) into a content-addressed cache.

A game is built once by TextWorld's own generator and Inform7 compiler, then reused: the cache key hashes the
kind, the knobs, the seed and TextWorld's version. Building is safe under concurrent processes: one file lock
per key, the game is written to a temporary folder and renamed into place, so a reader never sees half a game.

The cache is :mod:`agentenv.cache` (``$AGENTENV_CACHE``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentenv.cache import build_once, cache_root

#: Bump when the way games are built changes, so old cache entries are not reused.
FORMAT = 4
#: TextWorld sometimes generates a game its own walkthrough cannot win (e.g. two objects whose names the parser
#: cannot tell apart). Such a draw is rejected and the generator is re-seeded, deterministically, up to this often.
MAX_ATTEMPTS = 10
KINDS = ("custom", "simple", "cooking")


@contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence jericho's UnsupportedGameWarning: it knows only published games' score layout, while TextWorld
    tracks the score of its own games itself, so nothing is lost."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Game .* is not fully supported")
        yield


def require_textworld() -> Any:
    try:
        import textworld
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(
            "The TextWorld environments need the 'textworld' extra: pip install 'agentenv[textworld]'"
        ) from e
    return textworld


@dataclass(frozen=True)
class GameSpec:
    """What a game is made from. Equal specs give byte-identical games."""

    kind: str
    knobs: tuple[tuple[str, Any], ...]
    seed: int

    @classmethod
    def of(cls, kind: str, knobs: Mapping[str, Any], seed: int) -> GameSpec:
        return cls(kind, tuple(sorted(knobs.items())), int(seed))

    def key(self) -> str:
        textworld = require_textworld()
        blob = json.dumps(
            {"kind": self.kind, "knobs": self.knobs, "seed": self.seed, "textworld": textworld.__version__,
             "format": FORMAT},
            sort_keys=True,
        )  # fmt: skip
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Game:
    """A built game: the compiled story file and what the env needs to know about it."""

    path: Path
    objective: str
    walkthrough: tuple[str, ...]
    max_score: int


def build(spec: GameSpec, root: Path | None = None) -> Game:
    """The game for ``spec``: from the cache when built before, otherwise generated and compiled now (~1 s)."""
    folder = build_once((root or cache_root()) / "textworld" / spec.key(), lambda out: _build_into(spec, out),
                        marker="meta.json")  # fmt: skip
    meta = json.loads((folder / "meta.json").read_text())
    return Game(folder / "game.z8", meta["objective"], tuple(meta["walkthrough"]), int(meta["max_score"]))


def _build_into(spec: GameSpec, out: Path) -> None:
    textworld = require_textworld()
    from textworld.generator import compile_game

    _parse_logic_once()

    for attempt in range(MAX_ATTEMPTS):
        options = textworld.GameOptions()
        options.seeds = spec.seed if attempt == 0 else _reseed(spec.seed, attempt)
        options.path = str(out / "game.z8")
        options.force_recompile = True
        with quiet_engine():  # the challenges replay their walkthrough in jericho while generating
            game = _make_game(spec, options)
            _canonical_order(game)
            compile_game(game, options)
        walkthrough = _winning_walkthrough(textworld, game, out / "game.z8")
        if walkthrough is not None:
            break
    else:
        raise RuntimeError(f"TextWorld made no winnable game for {spec} in {MAX_ATTEMPTS} attempts")
    meta = {
        "spec": {"kind": spec.kind, "knobs": dict(spec.knobs), "seed": spec.seed},
        "attempt": attempt,
        "generator_seeds": options.seeds,
        "textworld": textworld.__version__,
        "objective": game.objective,
        "walkthrough": walkthrough,
        "max_score": game.max_score,
        "sha256": hashlib.sha256((out / "game.z8").read_bytes()).hexdigest(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def _parse_logic_once() -> None:
    """Make TextWorld parse each set of its logic files once per process, not once per game.

    Every game TextWorld makes loads a knowledge base from its ``*.twl`` files, and parsing them (tatsu) costs more
    CPU than the rest of making a custom game. A loaded ``GameLogic`` is never changed afterwards (TextWorld's own
    ``GameLogic.parse`` shares one instance between games through an lru_cache), so sharing it gives byte-identical
    games. Keyed by the files' contents, so an edited file is parsed again.
    """
    from textworld.logic import GameLogic

    if getattr(GameLogic.load, "_agentenv_once", False):
        return
    load = GameLogic.load.__func__
    loaded: dict[tuple[Any, ...], Any] = {}

    def load_once(cls: type, paths: Iterable[str]) -> Any:
        paths = tuple(paths)
        key = (cls, paths, tuple(Path(path).read_bytes() for path in paths))
        if key not in loaded:
            loaded[key] = load(cls, paths)
        return loaded[key]

    load_once._agentenv_once = True  # type: ignore[attr-defined]
    GameLogic.load = classmethod(load_once)


def _reseed(seed: int, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{attempt}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def _canonical_order(game: Any) -> None:
    """Sort what TextWorld lists in an order that depends on ``PYTHONHASHSEED``, so that one seed gives the same
    game file in every process: the cooking challenge lists each ingredient's wrong cookings and cuttings (its
    quests' fail events) by iterating a set of strings, and ``GameMaker`` the names its grammar must not reuse.
    Neither order changes how the game plays (any fail event loses; the names are only excluded)."""
    for quest in game.quests:
        quest.fail_events = sorted(quest.fail_events, key=lambda e: json.dumps(e.serialize(), sort_keys=True))
    if game.grammar is not None:
        game.grammar.options.names_to_exclude.sort(key=str)  # None among the names too


def _winning_walkthrough(textworld: Any, game: Any, path: Path) -> list[str] | None:
    """The walkthrough to store, or None when the game is not winnable as planned (then it is rejected).

    A game is kept when the policy TextWorld plans from its start wins it. Its walkthrough is then TextWorld's own
    (``game.walkthrough``, what ``tw-play --mode walkthrough`` plays: the cooking games check the inventory and read
    the cookbook first) when playing that wins too, less the commands that are not admissible when they come (the
    cooking generator opens a container again for a second ingredient in it: "That's already open."), else the
    planned policy.
    """
    policy = _winning_play(textworld, path, None)
    if policy is None:
        return None
    own = list(game.walkthrough or [])
    return (own and _winning_play(textworld, path, own, skip_inadmissible=True)) or policy


def _winning_play(
    textworld: Any, path: Path, commands: list[str] | None, *, skip_inadmissible: bool = False
) -> list[str] | None:
    """The commands played if playing ``commands`` (None: TextWorld's policy at the start of the game) wins the
    game; else None. A command that is not admissible when it comes fails the play, or with ``skip_inadmissible``
    is left out."""
    infos = textworld.EnvInfos(policy_commands=True, won=True, admissible_commands=True)
    with quiet_engine():
        engine = textworld.start(str(path), infos)
        try:
            state = engine.reset()
            played = []
            for command in list(state.policy_commands) if commands is None else commands:
                if command not in state.admissible_commands:
                    if skip_inadmissible:
                        continue
                    return None
                state, _, _ = engine.step(command)
                played.append(command)
            return played if state.won else None
        finally:
            engine.close()


def _make_game(spec: GameSpec, options: Any) -> Any:
    knobs = dict(spec.knobs)
    if spec.kind == "custom":
        from textworld.generator import make_game

        options.nb_rooms = knobs["world_size"]
        options.nb_objects = knobs["nb_objects"]
        options.quest_length = knobs["quest_length"]
        return make_game(options)
    from textworld.challenges import CHALLENGES

    if spec.kind == "simple":
        settings = {"rewards": knobs["rewards"], "goal": knobs["goal"], "test": knobs["split"] == "test"}
        return CHALLENGES["tw-simple"][1](settings, options)
    if spec.kind == "cooking":
        cooking_split = {"train": "train", "validation": "valid", "test": "test"}[knobs["split"]]
        settings = {k: knobs[k] for k in ("recipe", "take", "go", "open", "cook", "cut", "drop")}
        settings.update(recipe_seed=spec.seed, split=cooking_split)
        return CHALLENGES["tw-cooking"][1](settings, options)
    raise ValueError(f"unknown game kind {spec.kind!r}; expected one of {KINDS}")
