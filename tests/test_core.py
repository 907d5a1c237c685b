import math

import gymnasium as gym
import pytest

import agentenv
from agentenv import ConfigError, InvalidAction, TextEnv, ToolCall, parse_action


def parse(action, tools=False, max_length=100):
    return parse_action(action, max_length=max_length, accepts_tools=tools)


@pytest.mark.parametrize(
    "action, reason",
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("x" * 101, "limit"),
        ("go\x00north", "control"),
        ("\x1b[31mgo\x1b[0m", "control"),
        (b"\xff\xfe", "UTF-8"),
        ("go \udcff", "UTF-8"),
        (3.5, "float"),
        (None, "NoneType"),
    ],
)
def test_unreadable_turns_become_invalid_actions(action, reason):
    parsed = parse(action)
    assert isinstance(parsed, InvalidAction)
    assert reason in parsed.reason


def test_readable_turns_pass_through_as_plain_str():
    assert parse("go north\n") == "go north\n"
    assert parse(b"take the key") == "take the key"
    assert type(parse(__import__("numpy").str_("look"))) is str


def test_tool_call_dicts_are_parsed_openai_style():
    call = parse({"function": {"name": "search", "arguments": '{"query": "bm25"}'}}, tools=True)
    assert call == ToolCall("search", {"query": "bm25"})
    assert parse({"name": "answer", "arguments": {"text": "42"}}, tools=True) == ToolCall("answer", {"text": "42"})


def test_malformed_tool_calls_are_invalid_with_a_reason():
    assert "JSON" in parse({"name": "search", "arguments": "{oops"}, tools=True).reason
    assert "name" in parse({"arguments": {}}, tools=True).reason
    assert "list" in parse([ToolCall("a"), "b"], tools=True).reason


def test_text_envs_refuse_tool_calls():
    assert "text actions" in parse(ToolCall("search"), tools=False).reason


def test_unknown_kwarg_names_it_and_lists_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown keyword argument 'sise'.*Did you mean 'size'.*nb_keys"):
        gym.make("AgentEnv/KeyDoor-v0", sise=4)


def test_bad_knob_value_names_the_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"reward='medium'.*\['sparse', 'dense', 'ratio'\]"):
        agentenv.make("AgentEnv/KeyDoor-v0", reward="medium")
    with pytest.raises(ConfigError, match=r"max_turns=0"):
        agentenv.make("AgentEnv/KeyDoor-v0", max_turns=0)
    with pytest.raises(ConfigError, match="render_mode"):
        agentenv.make("AgentEnv/KeyDoor-v0", render_mode="human")


def test_step_before_reset_and_after_the_end_are_usage_errors(keydoor):
    with pytest.raises(gym.error.ResetNeeded):
        keydoor.unwrapped.step("look")
    keydoor.reset(seed=0)
    for action in keydoor.unwrapped.walkthrough():
        keydoor.step(action)
    with pytest.raises(gym.error.ResetNeeded, match="episode is over"):
        keydoor.unwrapped.step("look")


def test_turn_limit_truncates_like_time_limit():
    env = agentenv.make("AgentEnv/KeyDoor-v0", max_turns=3)
    env.reset(seed=0)
    flags = [env.step("look")[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_invalid_action_penalty_is_a_named_reward_part():
    env = agentenv.make("AgentEnv/KeyDoor-v0", invalid_action_penalty=0.1)
    env.reset(seed=0)
    _, reward, _, _, info = env.step("dance wildly")
    assert info["invalid_action"] and math.isclose(reward, -0.1)
    assert info["reward_parts"]["invalid_action_penalty"] == -0.1
    _, reward, _, _, info = env.step("look")
    assert not info["invalid_action"] and reward == 0.0 and "invalid_action_penalty" not in info["reward_parts"]


class Echo(TextEnv):
    """A minimal subclass: echoes the turn, optionally many times over, to test the base class's duties."""

    instructions = "Say anything."

    def __init__(self, *, repeat: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.repeat = repeat

    def _reset(self, task_seed, options):
        return "Say something.", {}

    def _step(self, action):
        return action * self.repeat, 0.0, action == "bye", {}


def test_long_observations_are_cut_to_the_space_with_a_note():
    env = Echo(repeat=10_000, max_observation_length=1000)
    env.reset(seed=0)
    observation, *_ = env.step("abc")
    assert len(observation) == 1000 and observation in env.observation_space
    assert observation.endswith("characters truncated]")


def test_base_class_fills_documented_info_keys():
    env = Echo()
    _, info = env.reset(seed=0)
    assert info == {
        "task_id": "echo-0",
        "instructions": "Say anything.",
        "tools": [],
        "optimal_steps": None,
        "turn_limit": 50,
    }
    _, reward, terminated, truncated, info = env.step("bye")
    assert reward == 0.0 and terminated and not truncated
    assert info == {"success": False, "turn": 1, "invalid_action": False, "reward_parts": {"task": 0.0}}


def test_default_invalid_turn_goes_on_with_a_message():
    env = Echo()
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(None)
    assert observation.startswith("Invalid action:") and info["invalid_reason"]
    assert (reward, terminated, truncated, info["invalid_action"]) == (0.0, False, False, True)


def test_render_ansi_shows_turn_action_and_observation():
    env = Echo(render_mode="ansi", max_turns=5)
    env.reset(seed=0)
    env.step("hello")
    assert env.render() == "[turn 1/5] > hello\nhello\n"


def test_close_is_idempotent_and_reset_reopens():
    env = Echo()
    env.reset(seed=0)
    env.close()
    env.close()
    assert env.reset(seed=0)[0] == "Say something."


@pytest.mark.parametrize("split, base", [("train", 0), ("validation", 1_000_000_000), ("test", 2_000_000_000)])
def test_each_split_owns_its_own_task_seeds(split, base):
    env = Echo(split=split)
    assert env.reset(seed=3)[1]["task_id"] == f"echo-{base + 3}"


def test_pool_size_restricts_a_split_to_its_first_tasks():
    env = Echo(split="validation", pool_size=3)
    env.reset(seed=0)
    drawn = {env.reset()[1]["task_id"] for _ in range(60)}
    assert drawn == {f"echo-{1_000_000_000 + i}" for i in range(3)}
    assert env.reset(seed=5)[1]["task_id"] == "echo-1000000002"


def test_task_id_of_another_env_is_refused():
    with pytest.raises(ConfigError, match=r"expected 'echo-<seed>'"):
        Echo().reset(options={"task_id": "keydoor-s3k1d2-5"})


def test_budget_factor_sets_the_turn_limit_from_optimal_steps():
    env = agentenv.make("AgentEnv/KeyDoor-v0", budget_factor=1.5, max_turns=1000)
    _, info = env.reset(seed=2)
    assert info["turn_limit"] == math.ceil(1.5 * info["optimal_steps"])
    flags = [env.step("look")[3] for _ in range(info["turn_limit"])]
    assert flags == [False] * (info["turn_limit"] - 1) + [True]


def test_budget_factor_needs_an_env_that_knows_optimal_steps():
    with pytest.raises(ConfigError, match="budget_factor needs optimal_steps"):
        Echo(budget_factor=2.0).reset(seed=0)


def test_bad_split_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"split='dev'.*\['train', 'validation', 'test'\]"):
        Echo(split="dev")
