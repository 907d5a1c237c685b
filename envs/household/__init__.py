"""Household: ALFWorld's six text-mode task types in seeded rooms, pure Python (see README.md in this folder).

A faithful world model of ALFWorld's text game (its command grammar, feedback and goal conditions) with our own task
generator, since ALFWorld's game files download from a release page that is out of reach offline.
"""

from __future__ import annotations

#: Registered presets: id -> (kwargs, description). ``max_turns`` is about 3x the typical optimal solution.
PRESETS: dict[str, tuple[dict, str]] = {
    "Household-v0": (
        {"max_turns": 50},
        "all six ALFWorld task types, 15 receptacles, 10 distractors, 50 turns as in ALFWorld (knobs as kwargs)",
    ),
    "Household-Pick-v0": (
        {"task_types": ["pick_and_place_simple"], "max_turns": 20},
        "pick_and_place_simple: put a/some {obj} in/on {recep}",
    ),
    "Household-Look-v0": (
        {"task_types": ["look_at_obj_in_light"], "max_turns": 20},
        "look_at_obj_in_light: hold the {obj} under a switched-on {lamp}",
    ),
    "Household-Clean-v0": (
        {"task_types": ["pick_clean_then_place_in_recep"], "max_turns": 25},
        "pick_clean_then_place_in_recep: clean some {obj} in a sinkbasin and put it in {recep}",
    ),
    "Household-Heat-v0": (
        {"task_types": ["pick_heat_then_place_in_recep"], "max_turns": 25},
        "pick_heat_then_place_in_recep: heat some {obj} in the microwave and put it in {recep}",
    ),
    "Household-Cool-v0": (
        {"task_types": ["pick_cool_then_place_in_recep"], "max_turns": 25},
        "pick_cool_then_place_in_recep: cool some {obj} in the fridge and put it in {recep}",
    ),
    "Household-PickTwo-v0": (
        {"task_types": ["pick_two_obj_and_place"], "max_turns": 35},
        "pick_two_obj_and_place: put two {obj} in/on one {recep}",
    ),
}


def register_envs() -> None:
    from agentenv.registry import register

    for name, (kwargs, description) in PRESETS.items():
        register(
            name,
            "agentenv.envs.household.env:HouseholdEnv",
            kwargs=kwargs,
            family="household",
            description=description,
        )
