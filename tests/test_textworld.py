import hashlib
import json
import math
import multiprocessing
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor

import pytest

import agentenv
from agentenv import ConfigError
from agentenv.core import task_seeds
from agentenv.envs.textworld.games import GameSpec, build
from agentenv.testing import check_env

TEXTWORLD_IDS = [i for i in agentenv.env_ids() if "/TextWorld-" in i]
TINY = "AgentEnv/TextWorld-w1o1q1-v0"
BASE = "AgentEnv/TextWorld-w2o3q4-v0"


def play(env, actions):
    return [env.step(a) for a in actions]


def test_the_paper_grid_and_challenges_are_registered():
    for name in ("w2o3q4", "w8o3q4", "w2o12q4", "w8o12q4", "w4o6q8", "w1o1q1", "w2o2q2"):
        assert f"AgentEnv/TextWorld-{name}-v0" in TEXTWORLD_IDS
    for name in ("Simple-Dense", "Simple-Balanced", "Simple-Sparse", "Cooking"):
        assert f"AgentEnv/TextWorld-{name}-v0" in TEXTWORLD_IDS


@pytest.fixture(scope="module")
def textworld_pool():
    """Two worker processes for the slow checks of every preset, which build over 300 games between them (about a
    CPU-second each in TextWorld's generator and compiler): they run two at a time, and each worker imports
    TextWorld and parses its grammars once."""
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def contract_checks(textworld_pool):
    """Every preset's check_env, all submitted at once, so the pool runs two presets at a time."""
    return {env_id: textworld_pool.submit(check_env, env_id) for env_id in TEXTWORLD_IDS}


@pytest.mark.slow
@pytest.mark.parametrize("env_id", TEXTWORLD_IDS)
def test_every_preset_meets_the_contract(env_id, contract_checks):
    assert contract_checks[env_id].result().ok  # check_env raises EnvContractError naming each failed check


def _prepare_task(job: tuple[str, int]) -> None:
    env_id, task_seed = job
    env = agentenv.make(env_id)
    try:
        env.unwrapped.prepare_task(task_seed)
    finally:
        env.close()


@pytest.fixture(scope="module")
def prepared_test_split(textworld_pool):
    """Build the 20 test games of every preset ahead, two processes at a time (as ``agentenv prepare --workers 2``
    does for one preset; test_prepare_builds_a_split_ahead runs the command)."""
    jobs = [(env_id, task_seed) for env_id in TEXTWORLD_IDS for task_seed in task_seeds("test", 20)]
    list(textworld_pool.map(_prepare_task, jobs))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first one builds every preset's 20 test games (~300; 9 minutes at load 5 on 2 cores)
@pytest.mark.parametrize("env_id", TEXTWORLD_IDS)
def test_walkthrough_wins_on_20_test_seeds(env_id, prepared_test_split):
    env = agentenv.make(env_id, split="test")
    try:
        for seed in range(20):
            _, info = env.reset(seed=seed)
            assert info["task_id"].endswith(str(2_000_000_000 + seed))
            steps = play(env, env.unwrapped.walkthrough())
            assert len(steps) == info["optimal_steps"]
            assert steps[-1][2] and steps[-1][4]["success"], f"{env_id} test seed {seed} not won"
            assert not any(s[4]["invalid_action"] for s in steps), (
                f"{env_id} seed {seed}: a walkthrough step is invalid"
            )
    finally:
        env.close()


def test_first_observation_has_goal_room_and_inventory():
    env = agentenv.make(BASE)
    observation, info = env.reset(seed=0)
    goal, _, rest = observation.partition("\n\n")
    assert goal.startswith("Goal: ") and len(goal) > 20
    assert rest.startswith("You are now in the ") and "carrying" in rest
    assert "___" not in observation and "-= " not in observation  # no banner, no status line
    assert info["optimal_steps"] >= 1 and info["max_score"] >= 1


def test_each_step_shows_room_feedback_and_inventory():
    env = agentenv.make(BASE)
    env.reset(seed=0)
    observation, *_ = env.step("look")
    lines = observation.splitlines()
    assert lines[0].startswith("You are now in the ") and "carrying" in lines[-1]


def test_non_admissible_commands_are_invalid_but_answered_by_the_game():
    env = agentenv.make(BASE)
    env.reset(seed=0)
    observation, reward, terminated, _, info = env.step("dance with the moon")
    assert info["invalid_action"] and reward == 0.0 and not terminated
    assert "That's not a verb I recognise." in observation
    assert not env.step("inventory")[4]["invalid_action"]


def test_commands_match_admissible_ones_ignoring_case_and_full_stops():
    env = agentenv.make(BASE)
    env.reset(seed=0)
    first = env.unwrapped.walkthrough()[0]
    assert not env.step(first.upper() + ".")[4]["invalid_action"]


@pytest.mark.parametrize("action", ["go\\north", "take 🙂", "x" * 3000, "open \\\\ box"])
def test_engine_hostile_input_is_an_invalid_turn_and_the_game_goes_on(action):
    env = agentenv.make(BASE)
    env.reset(seed=1)
    _, _, _, _, info = env.step(action)
    assert info["invalid_action"]
    steps = play(env, env.unwrapped.walkthrough())
    assert steps[-1][4]["success"]


def test_a_dead_engine_is_restarted_and_the_episode_replayed():
    env = agentenv.make(BASE)
    env.reset(seed=2)
    walkthrough = env.unwrapped.walkthrough()
    play(env, walkthrough[:1])
    env.unwrapped._engine.close()  # the game process dies under us
    observation, _, _, _, info = env.step(walkthrough[1])
    assert info["invalid_action"] and "could not process" in observation
    steps = play(env, walkthrough[1:])
    assert steps[-1][4]["success"]


def test_dense_rewards_sum_to_the_normalised_score():
    env = agentenv.make("AgentEnv/TextWorld-Simple-Dense-v0", reward="dense")
    env.reset(seed=0)
    walkthrough = env.unwrapped.walkthrough()
    partial = play(env, walkthrough[:5])
    last = partial[-1][4]
    assert 0 < last["score"] < last["max_score"]
    assert math.isclose(sum(s[1] for s in partial), last["score"] / last["max_score"])
    rest = play(env, walkthrough[5:])
    assert math.isclose(sum(s[1] for s in partial + rest), 1.0)
    assert sum(s[1] > 0 for s in partial + rest) > 3  # dense: many scoring turns


def test_sparse_simple_game_scores_only_at_the_end():
    env = agentenv.make("AgentEnv/TextWorld-Simple-Sparse-v0", reward="dense")
    env.reset(seed=0)
    rewards = [s[1] for s in play(env, env.unwrapped.walkthrough())]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0


def test_ratio_reward_pays_partial_progress_when_truncated():
    env = agentenv.make("AgentEnv/TextWorld-Simple-Dense-v0", reward="ratio", max_turns=4)
    env.reset(seed=0)
    steps = play(env, env.unwrapped.walkthrough()[:4])
    assert [s[1] for s in steps[:3]] == [0.0, 0.0, 0.0]
    assert steps[-1][3] and math.isclose(steps[-1][1], steps[-1][4]["progress"]) and steps[-1][1] > 0


def test_admissible_hint_lists_commands_when_asked():
    plain = agentenv.make(TINY).reset(seed=0)[0]
    hinted = agentenv.make(TINY, admissible_hint=True).reset(seed=0)[0]
    assert "Admissible commands:" not in plain and "Admissible commands:" in hinted


def test_budget_factor_uses_the_walkthrough_length():
    env = agentenv.make(BASE, budget_factor=2.0)
    _, info = env.reset(seed=0)
    assert info["turn_limit"] == 2 * info["optimal_steps"]


def test_cooking_knobs_are_validated():
    with pytest.raises(ConfigError, match=r"go=5 is not allowed; choose one of \[1, 6, 9, 12\]"):
        agentenv.make("AgentEnv/TextWorld-Cooking-v0", go=5)
    with pytest.raises(ConfigError, match=r"take=3 is out of range"):
        agentenv.make("AgentEnv/TextWorld-Cooking-v0", recipe=2, take=3)


def test_games_are_cached_by_content(tmp_path):
    spec = GameSpec.of("custom", {"world_size": 1, "nb_objects": 1, "quest_length": 1}, 5)
    first = build(spec, root=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = build(spec, root=tmp_path)
    assert again == first and first.path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = build(GameSpec.of("custom", {"world_size": 1, "nb_objects": 1, "quest_length": 1}, 6), root=tmp_path)
    assert other.path != first.path


BUILD_AND_PLAY = """
    import hashlib, json, sys
    import agentenv
    env = agentenv.make("AgentEnv/TextWorld-w2o3q4-v0", split="validation")
    transcript = [env.reset(seed=3)[0]]
    for action in ["look", "dance", *env.unwrapped.walkthrough()]:
        transcript.append(env.step(action)[0])
    game = env.unwrapped._game.path.read_bytes()
    print(json.dumps({"transcript": hashlib.sha256("\\n".join(transcript).encode()).hexdigest(),
                      "game": hashlib.sha256(game).hexdigest()}))
"""


def test_same_seed_same_game_and_transcript_across_processes(tmp_path):
    results = []
    for name in ("a", "b"):
        env = {**os.environ, "AGENTENV_CACHE": str(tmp_path / name)}
        run = subprocess.run([sys.executable, "-c", textwrap.dedent(BUILD_AND_PLAY)], capture_output=True, text=True,
                             env=env, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr
        results.append(json.loads(run.stdout))
    assert results[0] == results[1]


def test_concurrent_builds_of_one_game_agree(tmp_path):
    code = textwrap.dedent(
        """
        import hashlib, sys
        from pathlib import Path
        from agentenv.envs.textworld.games import GameSpec, build
        game = build(GameSpec.of("custom", {"world_size": 2, "nb_objects": 2, "quest_length": 2}, 9), Path(sys.argv[1]))
        print(game.path, hashlib.sha256(game.path.read_bytes()).hexdigest())
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    games = [d for d in (tmp_path / "textworld").iterdir() if d.is_dir()]
    assert len(games) == 1 and not any(d.name.startswith(".") for d in games)
    meta = json.loads((games[0] / "meta.json").read_text())
    assert meta["sha256"] == hashlib.sha256((games[0] / "game.z8").read_bytes()).hexdigest()


def test_prepare_builds_a_split_ahead(tmp_path):
    env = {**os.environ, "AGENTENV_CACHE": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "agentenv.cli", "prepare", TINY, "--split", "validation", "-n", "3", "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    built = [json.loads(p.read_text())["spec"]["seed"] for p in (tmp_path / "textworld").glob("*/meta.json")]
    assert sorted(built) == task_seeds("validation", 3)


def test_sft_data_writes_chats_that_load_as_a_dataset(tmp_path):
    out = tmp_path / "sft.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "agentenv.cli", "sft-data", TINY, "--episodes", "3", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    from agentenv.rollout import load_sft_dataset

    dataset = load_sft_dataset(out)
    assert len(dataset) == 3 and all(dataset["success"])
    chat = dataset[0]["messages"]
    assert chat[0]["role"] == "system" and chat[1]["content"].startswith("Goal:") and chat[-1]["role"] == "assistant"


def textworlds_own_walkthrough(path) -> tuple[list[str], list[str]]:
    """What ``tw-play --mode walkthrough`` plays (the walkthrough TextWorld stores with the game it generated), and
    the commands of it that are admissible when they come (the others only get "That's already open.")."""
    import textworld

    infos = textworld.EnvInfos(extras=["walkthrough"], admissible_commands=True)
    engine = textworld.start(str(path), infos)
    try:
        state = engine.reset()
        own, admissible = list(state["extra.walkthrough"]), []
        for command in own:
            if command in state.admissible_commands:
                admissible.append(command)
            state, _, _ = engine.step(command)
        return own, admissible
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("env_id", "seeds"),
    [("AgentEnv/TextWorld-Cooking-v0", [0, 1, 2]), ("AgentEnv/TextWorld-Cooking-r2t2g6ock-v0", [1, 8]),
     ("AgentEnv/TextWorld-Simple-Dense-v0", [0, 1]), (BASE, [0, 1])],
)  # fmt: skip
def test_walkthrough_and_optimal_steps_are_textworlds_own(env_id, seeds):
    env = agentenv.make(env_id, split="test")
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            own, admissible = textworlds_own_walkthrough(env.unwrapped._game.path)
            assert env.unwrapped.walkthrough() == admissible and info["optimal_steps"] == len(admissible)
            if "Cooking" in env_id:
                assert admissible[0] == "inventory" and "examine cookbook" in admissible
            else:
                assert admissible == own
            first, *rest = admissible
            env.step(first)
            assert env.unwrapped.walkthrough() == rest  # the rest of it while the episode follows it
            steps = play(env, rest)
            assert steps[-1][4]["success"] and not any(s[4]["invalid_action"] for s in steps)
    finally:
        env.close()


def test_the_walkthrough_replans_when_the_episode_leaves_it():
    env = agentenv.make("AgentEnv/TextWorld-Cooking-v0")
    env.reset(seed=0)
    own = env.unwrapped.walkthrough()
    env.step(own[2])  # skips reading the cookbook
    replanned = env.unwrapped.walkthrough()
    assert replanned and "examine cookbook" not in replanned
    assert play(env, replanned)[-1][4]["success"]


GAME_HASH = """
    import hashlib, sys
    from pathlib import Path
    from agentenv.envs.textworld.games import GameSpec, build
    knobs = {
        "simple": {"rewards": "dense", "goal": "detailed", "split": "train"},
        "cooking": {"recipe": 2, "take": 2, "go": 6, "open": True, "cook": True, "cut": True, "drop": False,
                    "split": "train"},
    }
    for kind, seed in [("simple", 3), ("cooking", 3), ("cooking", 4)]:
        game = build(GameSpec.of(kind, knobs[kind], seed), Path(sys.argv[1]))
        print(kind, seed, hashlib.sha256(game.path.read_bytes()).hexdigest(), game.walkthrough)
"""


def test_same_seed_same_game_whatever_the_hash_seed(tmp_path):
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", textwrap.dedent(GAME_HASH), str(tmp_path / hash_seed)],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
