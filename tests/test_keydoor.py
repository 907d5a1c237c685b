import math

import pytest

import agentenv
from agentenv import ConfigError
from agentenv.envs.keydoor.world import generate, initial_state, plan
from agentenv.testing import check_env

from .conftest import KEYDOOR_IDS


@pytest.mark.parametrize("env_id", KEYDOOR_IDS)
def test_every_preset_meets_the_contract(env_id):
    assert check_env(env_id).ok


@pytest.mark.parametrize("reward", ["dense", "ratio"])
def test_other_reward_modes_meet_the_contract(reward):
    assert check_env("AgentEnv/KeyDoor-s5k2d4-v0", reward=reward).ok


def play(env, actions):
    return [env.step(a) for a in actions]


def test_same_seed_same_task_and_different_seeds_vary():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    assert env.reset(seed=11) == env.reset(seed=11)
    task_ids = {env.reset(seed=s)[1]["task_id"] for s in range(30)}
    first_rooms = {env.reset(seed=s)[0] for s in range(30)}
    assert len(task_ids) == 30 and len(first_rooms) > 20


def test_task_id_replays_the_task():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    observation, info = env.reset(seed=3)
    walkthrough = env.unwrapped.walkthrough()
    env.reset(seed=99)
    assert env.reset(options={"task_id": info["task_id"]}) == (observation, info)
    assert env.unwrapped.walkthrough() == walkthrough


def test_task_id_of_another_config_is_refused():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    with pytest.raises(ConfigError, match="keydoor-s5k2d4-<seed>"):
        env.reset(options={"task_id": "keydoor-s3k1d2-5"})


def test_knobs_are_validated_with_their_names():
    with pytest.raises(ConfigError, match=r"nb_keys=3 is out of range; allowed: \[0, 2\]"):
        agentenv.make("AgentEnv/KeyDoor-v0", size=3, nb_keys=3)
    with pytest.raises(ConfigError, match=r"size=9"):
        agentenv.make("AgentEnv/KeyDoor-v0", size=9)


@pytest.mark.parametrize("seed", range(40))
def test_every_key_is_needed(seed):
    world = generate(size=6, nb_keys=3, nb_distractors=4, seed=seed)
    assert plan(world, initial_state(world)) is not None
    for key in world.key_names:
        state = initial_state(world)
        state.items[key] = (-1, -1)  # the key is out of reach
        assert plan(world, state) is None, f"seed {seed}: solvable without the {key}"


def test_walkthrough_is_shortest_by_exhaustive_search_on_a_small_world():
    # Every command sequence up to the optimal length minus one must fail to win.
    env = agentenv.make("AgentEnv/KeyDoor-v0", size=2, nb_keys=1, nb_distractors=0)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        optimal = info["optimal_steps"]
        frontier = [[]]
        for _ in range(optimal - 1):
            grown = []
            for prefix in frontier:
                env.reset(seed=seed)
                play(env, prefix)
                grown += [[*prefix, c] for c in env.unwrapped.admissible_commands() if c not in ("look", "inventory")]
            frontier = grown
        for sequence in frontier:
            env.reset(seed=seed)
            assert not any(step[2] for step in play(env, sequence)), f"seed {seed}: {sequence} beats optimal"


def test_dense_rewards_sum_to_one_along_the_walkthrough():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0", reward="dense")
    env.reset(seed=5)
    steps = play(env, env.unwrapped.walkthrough())
    rewards = [s[1] for s in steps]
    assert math.isclose(sum(rewards), 1.0)
    assert sum(r > 0 for r in rewards) == 5  # two keys, two doors, the coin
    assert steps[-1][2] and steps[-1][4]["success"]


def test_sparse_reward_pays_only_the_winning_turn():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    env.reset(seed=5)
    rewards = [s[1] for s in play(env, env.unwrapped.walkthrough())]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0


def test_ratio_reward_gives_partial_credit_on_the_last_turn():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0", reward="ratio", max_turns=200)
    env.reset(seed=5)
    walkthrough = env.unwrapped.walkthrough()
    first_key = next(i for i, a in enumerate(walkthrough) if a.startswith("take"))
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0", reward="ratio", max_turns=first_key + 2)
    env.reset(seed=5)
    steps = play(env, [*walkthrough[: first_key + 1], "look"])
    assert [s[1] for s in steps[:-1]] == [0.0] * (first_key + 1)
    assert steps[-1][3] and math.isclose(steps[-1][1], 1 / 5)  # truncated, one milestone of five
    assert steps[-1][4]["reward_parts"] == {"ratio": steps[-1][1]}


def test_command_grammar_accepts_synonyms_and_flags_no_effect_commands():
    env = agentenv.make("AgentEnv/KeyDoor-v0", size=3, nb_keys=1)
    for seed in range(20):  # a task whose start room has an open exit
        env.reset(seed=seed)
        moves = [c.split()[1] for c in env.unwrapped.admissible_commands() if c.startswith("go ")]
        if moves:
            break
    direction = moves[0]
    assert not env.step(direction[0])[4]["invalid_action"]  # "n" / "s" / "e" / "w"
    assert not env.step("Look.")[4]["invalid_action"]
    for bad in ("dance", "take the moon", "drop the coin", "unlock up door", "go nowhere"):
        _, _, _, _, info = env.step(bad)
        assert info["invalid_action"], bad


def test_wrong_key_does_not_open_a_door():
    env = agentenv.make("AgentEnv/KeyDoor-v0", size=4, nb_keys=2, nb_distractors=0)
    env.reset(seed=2)
    walkthrough = env.unwrapped.walkthrough()
    unlock = next(i for i, a in enumerate(walkthrough) if a.startswith("unlock"))
    play(env, walkthrough[:unlock])
    direction = walkthrough[unlock].split()[1]
    right_key = walkthrough[unlock].split(" with ")[1]
    carried = env.unwrapped._state.carried
    wrong = next((k for k in carried if k != right_key), "blue key" if right_key != "blue key" else "red key")
    observation, _, _, _, info = env.step(f"unlock {direction} door with {wrong}")
    assert info["invalid_action"]
    observation, _, _, _, info = env.step(f"unlock {direction} door")  # the right key, carried, is used
    assert not info["invalid_action"] and "You unlock" in observation


def test_progress_and_admissible_commands_are_consistent():
    env = agentenv.make("AgentEnv/KeyDoor-s5k2d4-v0")
    env.reset(seed=8)
    for action in env.unwrapped.walkthrough()[:-1]:
        assert action in env.unwrapped.admissible_commands()
        env.step(action)
    assert f"take {'golden coin'}" in env.unwrapped.admissible_commands()
