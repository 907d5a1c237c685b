"""Key-Door: the reference env family, pure Python and fast (see README.md in this folder).

It is also the model for plugin authors: a ``TextEnv`` subclass in ``env.py`` and a ``register_envs()`` named by
an ``agentenv.envs`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

#: Registered presets: id suffix -> (kwargs, description). ``max_turns`` is about 3x the longest solutions seen.
PRESETS: dict[str, tuple[dict, str]] = {
    "KeyDoor-v0": ({}, "3x3 rooms, 1 locked door, 2 distractors (the defaults; pass knobs as kwargs)"),
    "KeyDoor-s2k0d1-v0": (
        {"size": 2, "nb_keys": 0, "nb_distractors": 1, "max_turns": 12},
        "tiny: 2x2 rooms, no locked door; for smoke tests and demos",
    ),
    "KeyDoor-s3k1d2-v0": (
        {"size": 3, "nb_keys": 1, "nb_distractors": 2, "max_turns": 30},
        "3x3 rooms, 1 locked door, 2 distractors",
    ),
    "KeyDoor-s5k2d4-v0": (
        {"size": 5, "nb_keys": 2, "nb_distractors": 4, "max_turns": 80},
        "5x5 rooms, 2 locked doors, 4 distractors",
    ),
    "KeyDoor-s8k4d8-v0": (
        {"size": 8, "nb_keys": 4, "nb_distractors": 8, "max_turns": 200},
        "8x8 rooms, 4 locked doors, 8 distractors (hard)",
    ),
}


def register_envs() -> None:
    from agentenv.registry import register

    for name, (kwargs, description) in PRESETS.items():
        register(
            name,
            "agentenv.envs.keydoor.env:KeyDoorEnv",
            kwargs=kwargs,
            family="keydoor",
            description=description,
        )
