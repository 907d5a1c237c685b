import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import agentenv
from agentenv import ConfigError
from agentenv.envs.household.scenes import LAMPS, OPENABLE
from agentenv.envs.household.world import (
    CLEAN,
    COOL,
    HEAT,
    LOOK,
    PICK,
    PICK_TWO,
    TASK_TYPES,
    admissible,
    apply,
    goal_reached,
    kind,
)
from agentenv.testing import check_env

HOUSEHOLD_IDS = [i for i in agentenv.env_ids() if "Household" in i]


def make(task_type=None, **kwargs):
    if task_type is not None:
        kwargs["task_types"] = [task_type]
    return agentenv.make("AgentEnv/Household-v0", **kwargs)


def play(env, actions):
    return [env.step(a) for a in actions]


def find_seed(env, predicate, seeds=range(200)):
    """The first seed whose task satisfies ``predicate(world)``; the env is left reset on it."""
    for seed in seeds:
        env.reset(seed=seed)
        if predicate(env.unwrapped._world):
            return seed
    raise AssertionError("no seed has the wanted task")


def test_household_presets_are_registered():
    assert {i.split("/")[1] for i in HOUSEHOLD_IDS} == {
        "Household-v0",
        "Household-Pick-v0",
        "Household-Look-v0",
        "Household-Clean-v0",
        "Household-Heat-v0",
        "Household-Cool-v0",
        "Household-PickTwo-v0",
    }
    assert all(agentenv.registry.card(i).family == "household" for i in HOUSEHOLD_IDS)


@pytest.mark.parametrize("env_id", HOUSEHOLD_IDS)
def test_every_preset_meets_the_contract(env_id):
    assert check_env(env_id).ok


@pytest.mark.parametrize("reward", ["dense", "ratio"])
def test_other_reward_modes_meet_the_contract(reward):
    assert check_env("AgentEnv/Household-v0", reward=reward).ok


# ---- tasks and the planner ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_walkthrough_wins_every_task_type_in_optimal_steps(task_type):
    env = make(task_type, split="test")
    for seed in range(20):
        _, info = env.reset(seed=seed)
        assert info["task_type"] == task_type
        walkthrough = env.unwrapped.walkthrough()
        assert len(walkthrough) == info["optimal_steps"]
        steps = play(env, walkthrough)
        assert not any(s[4]["invalid_action"] for s in steps)
        assert [s[2] for s in steps] == [False] * (len(steps) - 1) + [True], f"seed {seed}"
        assert steps[-1][4]["success"]


def shortest_by_exhaustive_search(world, state, limit):
    """Length of a shortest winning sequence of admissible commands (all of them, over the full state), or None."""
    seen, frontier = {state.key()}, [state]
    for depth in range(1, limit + 1):
        grown = []
        for node in frontier:
            for command in admissible(world, node):
                child = node.copy()
                apply(world, child, command)
                if goal_reached(world, child):
                    return depth
                if child.key() not in seen:
                    seen.add(child.key())
                    grown.append(child)
        frontier = grown
    return None


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_walkthrough_is_shortest_by_exhaustive_search_on_small_rooms(task_type):
    # Every command, distractors and closing included: nothing beats the planner, from the start or mid-episode.
    env = make(task_type, nb_receptacles=8, nb_distractor_objects=2)
    rng = np.random.default_rng(0)
    for seed in range(4):
        _, info = env.reset(seed=seed)
        base = env.unwrapped
        assert shortest_by_exhaustive_search(base._world, base._state, info["optimal_steps"]) == info["optimal_steps"]
        for _ in range(5):  # a random detour, then plan again from there
            commands = base.admissible_commands()
            if env.step(commands[int(rng.integers(len(commands)))])[2]:
                break
        walkthrough = base.walkthrough()
        if walkthrough:
            assert shortest_by_exhaustive_search(base._world, base._state, len(walkthrough)) == len(walkthrough)


def test_tasks_are_set_in_alfworld_rooms_and_never_start_solved():
    env = make()
    for seed in range(100):
        _, info = env.reset(seed=seed)
        world = env.unwrapped._world
        types = {kind(r) for r in world.receptacles}
        needs = {CLEAN: "sinkbasin", HEAT: "microwave", COOL: "fridge"}
        if info["task_type"] in needs:
            assert needs[info["task_type"]] in types
        if info["task_type"] == LOOK:
            assert any(kind(o) == world.task.lamp for o in world.start)
        else:
            assert world.task.recep in types
        assert info["optimal_steps"] > 0


# ---- rewards --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_dense_rewards_sum_to_one_along_the_walkthrough(task_type):
    env = make(task_type, reward="dense")
    env.reset(seed=5)
    rewards = [s[1] for s in play(env, env.unwrapped.walkthrough())]
    assert math.isclose(sum(rewards), 1.0) and min(rewards) >= 0.0


def test_dense_rewards_pay_each_milestone_of_a_heat_task():
    env = make(HEAT, reward="dense")
    env.reset(seed=5)
    walkthrough = env.unwrapped.walkthrough()
    steps = play(env, walkthrough)
    paid = [a.split()[0] for a, s in zip(walkthrough, steps, strict=True) if s[1] > 0]
    assert paid == ["take", "heat", "put"]  # taken, heated, placed: a third each
    assert all(math.isclose(s[1], 1 / 3) for s in steps if s[1] > 0)


def test_sparse_reward_pays_only_the_winning_turn():
    env = make(PICK_TWO)
    env.reset(seed=5)
    rewards = [s[1] for s in play(env, env.unwrapped.walkthrough())]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0


@pytest.mark.parametrize("last_turn", ["dance", ""])  # "Nothing happens." and an unreadable turn
def test_ratio_reward_gives_partial_credit_on_a_truncated_last_turn(last_turn):
    env = make(HEAT, reward="ratio")
    env.reset(seed=5)
    walkthrough = env.unwrapped.walkthrough()
    heated = next(i for i, a in enumerate(walkthrough) if a.startswith("heat"))
    env = make(HEAT, reward="ratio", max_turns=heated + 2)
    env.reset(seed=5)
    steps = play(env, [*walkthrough[: heated + 1], last_turn])
    assert [s[1] for s in steps[:-1]] == [0.0] * (heated + 1)
    assert steps[-1][3] and steps[-1][4]["invalid_action"]
    assert math.isclose(steps[-1][1], 2 / 3)  # taken and heated, not placed
    assert steps[-1][4]["reward_parts"] == {"ratio": steps[-1][1]}


# ---- success conditions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_type", [CLEAN, HEAT, COOL])
def test_an_untreated_object_in_the_target_does_not_win(task_type):
    env = make(task_type)
    env.reset(seed=2)
    verb = task_type.split("_")[1]
    walkthrough = [a for a in env.unwrapped.walkthrough() if not a.startswith(verb)]
    steps = play(env, walkthrough)
    assert not any(s[4]["invalid_action"] for s in steps)
    assert not steps[-1][2] and math.isclose(steps[-1][4]["progress"], 1 / 3)
    obj = walkthrough[-1].split(" in/on ")[0].removeprefix("put ")
    assert env.step(f"examine {obj}")[0] == f"There's nothing special about {obj}."


def test_cooling_a_hot_object_makes_it_cold_and_no_longer_hot():
    env = make(HEAT, nb_receptacles=8)
    env.reset(seed=1)
    walkthrough = env.unwrapped.walkthrough()
    heated = next(i for i, a in enumerate(walkthrough) if a.startswith("heat"))
    play(env, walkthrough[: heated + 1])
    obj = walkthrough[heated].removeprefix("heat ").split(" with ")[0]
    assert env.step(f"examine {obj}")[0] == f"This is a hot {obj}."
    assert env.step("go to fridge 1")[0].startswith("You arrive at fridge 1.")
    assert env.step(f"cool {obj} with fridge 1")[0] == f"You cool the {obj} using the fridge 1."
    assert env.step(f"examine {obj}")[0] == f"This is a cold {obj}."
    steps = play(env, walkthrough[heated + 1 :])
    assert not steps[-1][2] and not steps[-1][4]["invalid_action"]


def test_look_task_needs_the_object_held_where_the_lamp_is_on():
    env = make(LOOK)
    find_seed(env, lambda w: w.start[w.goal_objects()[0]] not in {w.start[o] for o in w.start if kind(o) in LAMPS})
    world = env.unwrapped._world
    obj = world.goal_objects()[0]
    lamp = next(o for o in world.start if kind(o) == world.task.lamp)
    source, stand = world.start[obj], world.start[lamp]
    opening = [f"open {source}"] if kind(source) in OPENABLE else []
    steps = play(env, [f"go to {stand}", f"use {lamp}", f"go to {source}", *opening, f"take {obj} from {source}"])
    assert steps[1][0] == f"You turn on the {lamp}."
    assert not any(s[2] or s[4]["invalid_action"] for s in steps)  # holding it, the lamp on, but elsewhere
    assert env.step(f"go to {stand}")[2]


def test_look_task_needs_the_lamp_switched_on():
    env = make(LOOK)
    env.reset(seed=4)
    walkthrough = env.unwrapped.walkthrough()
    use = next(a for a in walkthrough if a.startswith("use"))
    steps = play(env, [a for a in walkthrough if a != use])
    assert not any(s[2] for s in steps) and env.unwrapped._state.held is not None
    assert env.step(use)[2]


def test_look_task_is_not_won_under_a_lamp_of_another_type():
    env = make(LOOK)
    find_seed(env, lambda w: {kind(o) for o in w.start} >= set(LAMPS))
    world = env.unwrapped._world
    other = next(o for o in world.start if kind(o) in LAMPS and kind(o) != world.task.lamp)
    walkthrough = env.unwrapped.walkthrough()
    take = next(i for i, a in enumerate(walkthrough) if a.startswith("take"))
    steps = play(env, [*walkthrough[: take + 1], f"go to {world.start[other]}", f"use {other}"])
    assert steps[-1][0] == f"You turn on the {other}." and not steps[-1][2]


def test_pick_two_needs_both_objects_in_the_same_receptacle():
    env = make(PICK_TWO)
    find_seed(
        env,
        lambda w: sum(kind(r) == w.task.recep for r in w.receptacles) >= 2 and w.task.recep not in OPENABLE,
    )
    world = env.unwrapped._world
    walkthrough = env.unwrapped.walkthrough()
    assert walkthrough[-2].startswith("go to ")
    target = walkthrough[-2].removeprefix("go to ")
    other = next(r for r in world.receptacles if kind(r) == world.task.recep and r != target)
    obj = walkthrough[-1].split(" in/on ")[0].removeprefix("put ")
    steps = play(env, [*walkthrough[:-2], f"go to {other}", f"put {obj} in/on {other}"])
    assert not steps[-1][4]["invalid_action"] and not steps[-1][2]
    assert math.isclose(steps[-1][4]["progress"], 3 / 4)


# ---- rules and feedback ---------------------------------------------------------------------------------------
def test_first_observation_lists_the_room_and_states_the_task():
    env = make(nb_receptacles=12)
    observation, _ = env.reset(seed=0)
    room, task = observation.split("\n\n")
    match = re.fullmatch(r"You are in the middle of a room\. Looking quickly around you, you see (.+)\.", room)
    assert match and len(match.group(1).split(", ")) == 12
    assert task == f"Your task is to: {env.unwrapped._world.task.text}" and task.endswith(".")


def test_failed_commands_say_nothing_happens_and_are_invalid():
    env = make(CLEAN)
    env.reset(seed=0)
    world = env.unwrapped._world
    obj = world.goal_objects()[0]
    source = world.start[obj]
    before = env.unwrapped._state.key()
    for bad in (
        "dance",
        "go to moon 1",
        f"take {obj} from {source}",  # not there yet
        f"open {source}",
        f"clean {obj} with sinkbasin 1",  # not carrying it
        f"put {obj} in/on {source}",
        "use desklamp 1",
        "examine sinkbasin 1",
    ):
        observation, _, _, _, info = env.step(bad)
        assert observation == "Nothing happens." and info["invalid_action"] and info["invalid_reason"], bad
    assert env.unwrapped._state.key() == before
    play(env, ["go to countertop 1"])
    assert env.step("open countertop 1")[4]["invalid_action"]  # not openable
    walkthrough = env.unwrapped.walkthrough()
    play(env, walkthrough[: walkthrough.index("go to sinkbasin 1") + 1])
    assert env.step(f"heat {obj} with sinkbasin 1")[0] == "Nothing happens."  # heat needs a microwave


def test_the_agent_carries_one_object_at_a_time():
    env = make(PICK_TWO)
    find_seed(env, lambda w: any(list(w.start.values()).count(w.start[o]) >= 2 for o in w.goal_objects()))
    world = env.unwrapped._world
    source = next(w for o in world.goal_objects() if list(world.start.values()).count(w := world.start[o]) >= 2)
    first, second = [o for o, where in world.start.items() if where == source][:2]
    play(env, [f"go to {source}", *([f"open {source}"] if kind(source) in OPENABLE else [])])
    assert not env.step(f"take {first} from {source}")[4]["invalid_action"]
    observation, _, _, _, info = env.step(f"take {second} from {source}")
    assert observation == "Nothing happens." and info["invalid_action"]
    assert env.step("inventory")[0] == f"You are carrying: a {first}."
    assert not env.step(f"put {first} in/on {source}")[4]["invalid_action"]
    assert env.step(f"take {second} from {source}")[0] == f"You pick up the {second} from the {source}."


def test_closed_receptacles_must_be_opened_to_see_and_take():
    env = make(PICK)
    find_seed(env, lambda w: kind(w.start[w.goal_objects()[0]]) in OPENABLE)
    world = env.unwrapped._world
    obj = world.goal_objects()[0]
    box = world.start[obj]
    assert env.step(f"go to {box}")[0] == f"You arrive at {box}. The {box} is closed."
    assert env.step(f"take {obj} from {box}")[4]["invalid_action"]
    observation = env.step(f"open {box}")[0]
    assert observation.startswith(f"You open the {box}. The {box} is open. In it, you see ")
    assert f"a {obj}" in observation
    assert env.step(f"close {box}")[0] == f"You close the {box}."
    assert env.step(f"close {box}")[4]["invalid_action"]
    assert env.step(f"take {obj} from {box}")[4]["invalid_action"]
    assert env.step(f"examine {box}")[0] == f"The {box} is closed."
    play(env, [f"open {box}"])
    assert not env.step(f"take {obj} from {box}")[4]["invalid_action"]


def test_command_grammar_accepts_alfworld_variants():
    env = make(PICK)
    env.reset(seed=3)
    variants = []
    for command in env.unwrapped.walkthrough():
        if command.startswith("take"):
            obj, recep = command.removeprefix("take ").split(" from ")
            command = f"Take the {obj} from the {recep}."
        elif command.startswith("put"):
            obj, recep = command.removeprefix("put ").split(" in/on ")
            command = f"move {obj} to {recep}"
        variants.append(command.upper() if command.startswith("go") else command)
    steps = play(env, variants)
    assert not any(s[4]["invalid_action"] for s in steps) and steps[-1][2]


def test_admissible_commands_are_valid_and_contain_the_walkthrough():
    env = make(nb_receptacles=10)
    rng = np.random.default_rng(1)
    for seed in range(5):
        env.reset(seed=seed)
        assert env.unwrapped.walkthrough()[0] in env.unwrapped.admissible_commands()
        for _ in range(30):
            commands = env.unwrapped.admissible_commands()
            _, _, terminated, _, info = env.step(commands[int(rng.integers(len(commands)))])
            assert not info["invalid_action"]
            if terminated:
                break


# ---- configuration, seeds and task ids -----------------------------------------------------------------------
def test_task_types_mixture_only_yields_the_requested_types():
    env = make(task_types=["heat", "look"])
    seen = {env.reset(seed=s)[1]["task_type"] for s in range(40)}
    assert seen == {HEAT, LOOK}


def test_all_task_types_come_up_by_default():
    env = make()
    assert {env.reset(seed=s)[1]["task_type"] for s in range(60)} == set(TASK_TYPES)


def test_aliases_and_alfworld_names_give_the_same_tasks():
    tasks = [make(task_types=t).reset(seed=7) for t in (["heat"], [HEAT], ["pick_heat_then_place"], "heat")]
    assert all(t == tasks[0] for t in tasks)
    assert tasks[0][1]["task_id"] == "household-r15d10-heat-7"
    assert make(task_types=["look", "heat"]).reset(seed=7) == make(task_types="heat,look").reset(seed=7)


def test_bad_task_types_name_the_field_and_the_allowed_values():
    allowed = r"task_types='bake' is not allowed; choose one of \[.*'pick_and_place_simple'"
    with pytest.raises(ConfigError, match=allowed):
        make(task_types=["heat", "bake"])
    with pytest.raises(ConfigError, match="task_types"):
        make(task_types=[])
    with pytest.raises(ConfigError, match="task_types"):
        make(task_types=3)


def test_knobs_are_validated_with_their_names():
    with pytest.raises(ConfigError, match=r"nb_receptacles=5 is out of range; allowed: \[8, 30\]"):
        make(nb_receptacles=5)
    with pytest.raises(ConfigError, match=r"nb_distractor_objects=-1"):
        make(nb_distractor_objects=-1)


def test_knobs_set_the_room_size_and_the_number_of_distractors():
    env = make(nb_receptacles=20, nb_distractor_objects=7)
    for seed in range(10):
        env.reset(seed=seed)
        world = env.unwrapped._world
        assert len(world.receptacles) == 20
        distractors = [o for o in world.start if kind(o) != world.task.obj and kind(o) not in LAMPS]
        assert len(distractors) == 7


def test_same_seed_same_transcript_and_different_seeds_vary():
    def transcript(seed):
        env = make(reward="dense")
        observation, info = env.reset(seed=seed)
        return [observation, info["task_id"], *(s[0] for s in play(env, env.unwrapped.walkthrough()))]

    assert transcript(11) == transcript(11)
    env = make()
    first_observations = {env.reset(seed=s)[0] for s in range(30)}
    assert len(first_observations) > 25


FIRST_OBSERVATIONS = """
import agentenv
env = agentenv.make("AgentEnv/Household-v0", nb_receptacles=20)
for seed in range(30):
    observation, info = env.reset(seed=seed)
    print(observation, info["optimal_steps"], env.unwrapped.walkthrough(), env.unwrapped.admissible_commands())
"""


def test_same_seed_same_task_in_another_process():
    # String hashing differs per process; no set order may leak into the generator or the planner.
    runs = [
        subprocess.run(
            [sys.executable, "-c", FIRST_OBSERVATIONS],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and runs[0].count("Your task is to:") == 30


def test_task_id_replays_the_task():
    env = agentenv.make("AgentEnv/Household-Clean-v0")
    observation, info = env.reset(seed=3)
    walkthrough = env.unwrapped.walkthrough()
    env.reset(seed=99)
    assert env.reset(options={"task_id": info["task_id"]}) == (observation, info)
    assert env.unwrapped.walkthrough() == walkthrough
    with pytest.raises(ConfigError, match="household-r15d10-clean-<seed>"):
        env.reset(options={"task_id": "household-r15d10-heat-3"})
