import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import agentenv
from agentenv import ConfigError, UnknownEnvError
from agentenv.registry import card

from .conftest import KEYDOOR_IDS


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_gym_make_with_module_prefix_needs_no_prior_import():
    result = run_python(
        """
        import sys, gymnasium as gym
        assert "agentenv" not in sys.modules
        env = gym.make("agentenv:AgentEnv/KeyDoor-s3k1d2-v0")
        print(env.reset(seed=0)[0])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Goal:")


def test_first_party_family_registers_through_the_entry_point():
    assert len(KEYDOOR_IDS) >= 4
    assert {card(i).source for i in KEYDOOR_IDS} == {"keydoor"}
    assert all(card(i).family == "keydoor" for i in KEYDOOR_IDS)


def test_agentenv_make_is_gym_make():
    a, b = agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0"), gym.make("AgentEnv/KeyDoor-s3k1d2-v0")
    assert type(a) is type(b) and a.spec == b.spec
    assert a.reset(seed=4) == b.reset(seed=4)


def test_unknown_id_lists_closest_registered_ids():
    with pytest.raises(UnknownEnvError, match=r"Closest registered ids: AgentEnv/KeyDoor-s3k1d2-v0"):
        agentenv.make("AgentEnv/KeyDor-s3k1d2-v0")


def test_unversioned_id_resolves_to_the_latest_version():
    assert agentenv.spec("AgentEnv/KeyDoor-s3k1d2").id == "AgentEnv/KeyDoor-s3k1d2-v0"


def test_ids_without_namespace_register_under_agentenv():
    spec = agentenv.register("RegistryTestEcho-v0", "tests.test_core:Echo", family="test")
    assert spec.id == "AgentEnv/RegistryTestEcho-v0"
    assert "AgentEnv/RegistryTestEcho-v0" in agentenv.env_ids()


def test_registering_the_same_definition_twice_is_a_no_op_but_a_different_one_is_an_error():
    agentenv.register("RegistryTestTwice-v0", "tests.test_core:Echo", kwargs={"repeat": 2})
    agentenv.register("RegistryTestTwice-v0", "tests.test_core:Echo", kwargs={"repeat": 2})
    with pytest.raises(ConfigError, match="already registered"):
        agentenv.register("RegistryTestTwice-v0", "tests.test_core:Echo", kwargs={"repeat": 3})


def test_entry_point_must_name_module_and_object():
    with pytest.raises(ConfigError, match=r"package\.module:ClassName"):
        agentenv.register("RegistryTestBad-v0", "tests.test_core.Echo")


def test_a_broken_plugin_warns_but_does_not_break_import(tmp_path):
    dist = tmp_path / "brokenplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agentenv.envs]\nbroken = no_such_module_here:register\n")
    result = run_python(
        """
        import warnings
        warnings.simplefilter("always")
        import agentenv
        from agentenv.registry import plugin_errors
        print(sorted(plugin_errors), "AgentEnv/KeyDoor-v0" in agentenv.env_ids())
        """,
        PYTHONPATH=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['broken'] True"
    assert "plugin 'broken'" in result.stderr and "failed to load" in result.stderr


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_batches_text_observations(mode):
    envs = agentenv.make_vec("AgentEnv/KeyDoor-s3k1d2-v0", num_envs=3, vectorization_mode=mode)
    try:
        observations, infos = envs.reset(seed=7)
        assert isinstance(observations, tuple) and len(observations) == 3
        assert all(o.startswith("Goal:") for o in observations)
        assert len(set(infos["task_id"])) == 3  # sub-envs are seeded 7, 8, 9
        observations, rewards, terminated, truncated, infos = envs.step(("look", "dance", "inventory"))
        assert [bool(x) for x in infos["invalid_action"]] == [False, True, False]
        assert rewards.tolist() == [0.0, 0.0, 0.0] and not terminated.any() and not truncated.any()
        assert all(isinstance(o, str) for o in observations)
    finally:
        envs.close()


def test_async_shared_memory_round_trips_unicode():
    agentenv.register("RegistryTestUnicode-v0", "tests.test_core:Echo")
    envs = agentenv.make_vec("AgentEnv/RegistryTestUnicode-v0", num_envs=2, vectorization_mode="async")
    try:
        envs.reset(seed=0)
        observations, *_ = envs.step(("héllo wörld ✓ 世界 🙂", "plain"))
        assert observations == ("héllo wörld ✓ 世界 🙂", "plain")
    finally:
        envs.close()


@pytest.mark.parametrize("env_id", [i for i in agentenv.env_ids() if card(i).source])
def test_spec_json_round_trip_is_lossless(env_id):
    spec = gym.spec(env_id)
    assert gym.envs.registration.EnvSpec.from_json(spec.to_json()) == spec
