"""TextWorld environments (``agentenv.envs.textworld``): games generated on demand by TextWorld's own generator.

Needs the ``textworld`` extra; this module imports nothing heavy, so registration costs nothing.
See README.md in this folder.
"""

from __future__ import annotations

_ENV = "agentenv.envs.textworld.env:"

#: id -> (entry point class, kwargs, description). Turn limits are generous multiples of typical solution lengths.
PRESETS: dict[str, tuple[str, dict, str]] = {
    "TextWorld-w1o1q1-v0": ("TextWorldEnv", {"world_size": 1, "nb_objects": 1, "quest_length": 1, "max_turns": 8},
                            "tiny custom quest: 1 room, 1 object, 1-step quest (CPU tests, demo)"),
    "TextWorld-w2o2q2-v0": ("TextWorldEnv", {"world_size": 2, "nb_objects": 2, "quest_length": 2, "max_turns": 12},
                            "small custom quest: 2 rooms, 2 objects, 2-step quest"),
    "TextWorld-w2o3q4-v0": ("TextWorldEnv", {"world_size": 2, "nb_objects": 3, "quest_length": 4, "max_turns": 20},
                            "the seed paper's base setting: w2-o3-q4"),
    "TextWorld-w8o3q4-v0": ("TextWorldEnv", {"world_size": 8, "nb_objects": 3, "quest_length": 4, "max_turns": 30},
                            "more rooms: w8-o3-q4"),
    "TextWorld-w2o12q4-v0": ("TextWorldEnv", {"world_size": 2, "nb_objects": 12, "quest_length": 4, "max_turns": 20},
                             "more objects: w2-o12-q4"),
    "TextWorld-w8o12q4-v0": ("TextWorldEnv", {"world_size": 8, "nb_objects": 12, "quest_length": 4, "max_turns": 30},
                             "more rooms and objects: w8-o12-q4"),
    "TextWorld-w4o6q8-v0": ("TextWorldEnv", {"world_size": 4, "nb_objects": 6, "quest_length": 8, "max_turns": 40},
                            "longer quests: w4-o6-q8"),
    "TextWorld-v0": ("TextWorldEnv", {}, "custom quest with knobs as kwargs (world_size, nb_objects, quest_length)"),
    "TextWorld-Simple-Dense-v0": ("TextWorldSimpleEnv", {"rewards": "dense", "max_turns": 30},
                                  "simple challenge, score on every useful step (reward-density study)"),
    "TextWorld-Simple-Balanced-v0": ("TextWorldSimpleEnv", {"rewards": "balanced", "max_turns": 30},
                                     "simple challenge, score on subgoals (reward-density study)"),
    "TextWorld-Simple-Sparse-v0": ("TextWorldSimpleEnv", {"rewards": "sparse", "max_turns": 30},
                                   "simple challenge, score only at the end (reward-density study)"),
    "TextWorld-Cooking-v0": ("TextWorldCookingEnv", {"max_turns": 30},
                             "cooking challenge: 1 ingredient, 1 room (knobs recipe, take, go, open, cook, cut, drop)"),
    "TextWorld-Cooking-r2t2g6ock-v0": ("TextWorldCookingEnv",
                                       {"recipe": 2, "take": 2, "go": 6, "open": True, "cook": True, "cut": True,
                                        "max_turns": 60},
                                       "cooking challenge: 2 ingredients to find in 6 rooms, open, cook and cut"),
}  # fmt: skip


def register_envs() -> None:
    from agentenv.registry import register

    for name, (cls, kwargs, description) in PRESETS.items():
        register(name, _ENV + cls, kwargs=kwargs, family="textworld", description=description)
