"""Issue 15, validation: bad configuration fails at once with a ConfigError naming the field; bad agent turns are
invalid turns; what reaches a terminal or a page shows control characters visibly, while the agent reads them raw."""

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import agentenv
from agentenv import ConfigError, TextEnv, ToolCall
from agentenv.errors import check_range
from agentenv.rewards import CentredSigmoid, ExactMatch, FormatPenalty, NumericMatch

# Every env a plugin registered (first-party families included), not the ones other tests register by hand.
ALL_IDS = [i for i in agentenv.env_ids() if agentenv.registry.card(i).source]
# What a terminal would act on: C0 and C1 controls but tab and newline, DEL, and lone surrogates.
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def env_class(env_id: str) -> type:
    return gym.envs.registration.load_env_creator(agentenv.spec(env_id).entry_point)


def deep_list(depth: int) -> list:
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def deep_dict(depth: int) -> dict:
    nested: dict = {}
    for _ in range(depth):
        nested = {"a": nested}
    return nested


# ---- 1. numbers are finite -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_range_refuses_nan_and_infinities_by_name(value):
    with pytest.raises(ConfigError, match=r"budget=-?(nan|inf) must be a finite number"):
        check_range("budget", value, 0.0)
    with pytest.raises(ConfigError, match="budget"):
        check_range("budget", value)  # no bounds: NaN compares false to everything, inf passes open ranges


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_invalid_action_penalty_fails_at_construction(value):
    with pytest.raises(ConfigError, match=r"invalid_action_penalty=(nan|inf)"):
        agentenv.make("AgentEnv/KeyDoor-v0", invalid_action_penalty=value)


def test_a_nan_budget_factor_fails_at_construction_not_at_reset():
    with pytest.raises(ConfigError, match=r"budget_factor=nan"):
        agentenv.make("AgentEnv/KeyDoor-v0", budget_factor=math.nan)


@pytest.mark.parametrize("env_id", ["AgentEnv/Search-World-h1-v0", "AgentEnv/Search-PyDocs-v0"])
@pytest.mark.parametrize("field", ["success_threshold", "retrieval_bonus", "distractor_rate"])
def test_search_score_knobs_refuse_nan(env_id, field):
    with pytest.raises(ConfigError, match=rf"{field}=nan"):
        agentenv.make(env_id, **{field: math.nan})


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_float_knob_of_every_env_refuses_nan_and_inf(env_id):
    from agentenv.core import env_kwarg_types

    floats = [name for name, hint in env_kwarg_types(env_class(env_id)).items() if float in _arms(hint)]
    assert "invalid_action_penalty" in floats and "budget_factor" in floats
    for name in floats:
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match=rf"{name}=-?(nan|inf)"):
                agentenv.make(env_id, **{name: value})


# ---- 2. reset options and seeds ------------------------------------------------------------------------------
def test_reset_options_must_be_a_dict(keydoor):
    with pytest.raises(ConfigError, match=r"options=\['x'\] must be a dict"):
        keydoor.reset(options=["x"])


def test_a_misspelt_reset_option_is_refused_with_a_suggestion(keydoor):
    with pytest.raises(ConfigError, match=r"unknown reset option 'taskid'.*Did you mean 'task_id'.*allowed: task_id"):
        keydoor.reset(options={"taskid": "keydoor-s3k1d2-5"})


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_env_refuses_unknown_reset_options(env_id):
    env = agentenv.make(env_id)
    try:
        with pytest.raises(ConfigError, match="unknown reset option 'taskid'"):
            env.reset(seed=0, options={"taskid": "x"})
    finally:
        env.close()


@pytest.mark.parametrize(
    "seed",
    [True, False, -1, 2**63, 2**70, 1.0, "3", np.float64(2.0), [1]],
    ids=["True", "False", "negative", "2**63", "2**70", "float", "str", "np.float64", "list"],
)
def test_bad_seeds_are_refused_by_name(keydoor, seed):
    with pytest.raises(ConfigError, match=r"seed=.* must be an int in \[0, 2\*\*63\)"):
        keydoor.reset(seed=seed)


def test_the_largest_seed_and_numpy_integers_are_seeds(keydoor):
    from agentenv.core import MAX_SEED

    assert MAX_SEED == 2**63 - 1
    keydoor.reset(seed=MAX_SEED)
    assert keydoor.reset(seed=np.int64(3))[1]["task_id"] == keydoor.reset(seed=3)[1]["task_id"]


@pytest.mark.parametrize("task_id", ["keydoor-s3k1d2-²", "keydoor-s3k1d2-٣", f"keydoor-s3k1d2-{2**70}"])
def test_a_task_id_needs_an_ascii_seed_in_range(keydoor, task_id):
    with pytest.raises(ConfigError, match=r"options\['task_id'\]"):
        keydoor.reset(options={"task_id": task_id})


# ---- 3. kwargs are type-checked ---------------------------------------------------------------------------------
def test_textworld_refuses_a_string_for_a_bool():
    with pytest.raises(ConfigError, match=r"admissible_hint='yes' must be a bool"):
        agentenv.make("AgentEnv/TextWorld-w1o1q1-v0", admissible_hint="yes")


def test_judge_refuses_an_int_for_a_bool():
    with pytest.raises(ConfigError, match=r"reasoning=1 must be a bool"):
        agentenv.make("AgentEnv/Judge-Pointwise-v0", reasoning=1)


@pytest.mark.parametrize("env_id", ["AgentEnv/Search-PyDocs-v0", "AgentEnv/Search-World-h1-v0"])
def test_search_refuses_an_unknown_world_size_at_construction(env_id):
    with pytest.raises(ConfigError, match=r"world_size='huge'.*'tiny', 'small', 'default', 'large'"):
        agentenv.make(env_id, world_size="huge")


def test_a_bare_string_is_not_a_list_of_answer_types():
    with pytest.raises(ConfigError, match=r"answer_types='entity' must be"):
        agentenv.make("AgentEnv/Search-World-h1-v0", answer_types="entity")


def _arms(hint) -> tuple:
    import typing

    args = typing.get_args(hint)
    return (
        tuple(a for arm in args for a in _arms(arm))
        if typing.get_origin(hint) in (typing.Union, type(int | None))
        else (hint,)
    )


def _wrong_values(hint) -> list:
    """Values of types that ``hint`` does not admit: anything unrelated, and the near misses people write."""
    arms = _arms(hint)
    wrong: list = [object()]
    if bool in arms:
        wrong += ["yes", 1]
    if int in arms and float not in arms:
        wrong += [2.5, True, "2"]
    if float in arms:
        wrong += ["0.5", True]
    if str in arms and int not in arms:
        wrong += [3]
    return wrong


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_kwarg_of_every_env_refuses_values_of_the_wrong_type(env_id):
    from agentenv.core import env_kwarg_types

    types = env_kwarg_types(env_class(env_id))
    assert {"max_turns", "invalid_action_penalty", "split", "reward"} <= set(types)
    for name, hint in types.items():
        for value in _wrong_values(hint):
            with pytest.raises(ConfigError, match=rf"{name}="):
                agentenv.make(env_id, **{name: value})


class Knobs(TextEnv):
    """A plugin-style env whose knobs are only annotated: the base class checks them."""

    def __init__(
        self,
        *,
        mode: Literal["fast", "slow"] = "fast",
        names: Sequence[str] = (),
        weights: dict[str, float] | None = None,
        data: Path | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "quick"}, r"mode='quick' must be one of \['fast', 'slow'\]"),
        ({"names": "alice"}, r"names='alice' must be a list of str"),
        ({"names": ["alice", 3]}, r"names=\['alice', 3\] must be a list of str"),
        ({"weights": {"a": "heavy"}}, r"weights=.* must be a dict of str to finite number or None"),
        ({"weights": {"a": math.nan}}, r"weights=.* must be a dict of str to finite number or None"),
        ({"data": 3}, r"data=3 must be a path or None"),
    ],
)
def test_annotated_kwargs_of_any_env_are_checked_before_it_is_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Knobs(**kwargs)


def test_annotated_kwargs_that_fit_are_accepted():
    Knobs(mode="slow", names=("alice",), weights={"a": 1, "b": 0.5}, data="data.jsonl")
    Knobs(names=["bob"], data=Path("x"))


# ---- 4. bad turns are invalid turns -----------------------------------------------------------------------------
def test_a_deeply_nested_or_unprintable_action_is_an_invalid_turn_and_renders():
    env = agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0", render_mode="ansi")
    env.reset(seed=0)
    huge_int = 10**5000  # its repr raises ValueError (past sys.get_int_max_str_digits())
    for action in (deep_list(100_000), deep_dict(100_000), {"name": "go", "arguments": deep_dict(100_000)}, huge_int):
        observation, reward, _, _, info = env.step(action)
        assert info["invalid_action"] and observation.startswith("Invalid action") and math.isfinite(reward)
        assert len(env.render()) < 2000
    env.close()


def test_a_tool_call_with_deeply_nested_arguments_is_an_invalid_turn_and_renders():
    env = agentenv.make("AgentEnv/Search-World-h1-v0", render_mode="ansi", world_size="tiny")
    env.reset(seed=0)
    _, _, _, _, info = env.step(ToolCall("search", {"query": deep_list(100_000)}))
    assert info["invalid_action"]
    assert len(env.render()) < 20_000
    env.close()


@pytest.mark.parametrize("action", ["look\ngo north", "look\r\ngo north", "look\rgo north", "look\u2028go north"])
def test_a_multi_line_turn_is_not_a_command_in_a_text_game(keydoor, action):
    keydoor.reset(seed=0)
    observation, _, _, _, info = keydoor.step(action)
    assert info["invalid_action"] and "one command per turn" in info["invalid_reason"]
    assert "one command per turn" in observation


@pytest.mark.parametrize("action", ["look\n", "look\r\n", "  look  \n\n"])
def test_surrounding_newlines_still_make_one_command(keydoor, action):
    keydoor.reset(seed=0)
    assert not keydoor.step(action)[4]["invalid_action"]


def test_household_refuses_multi_line_turns():
    env = agentenv.make("AgentEnv/Household-Pick-v0")
    env.reset(seed=0)
    assert "one command per turn" in env.step("look\ninventory")[4]["invalid_reason"]
    env.close()


def test_envs_that_read_prose_take_multi_line_turns():
    env = agentenv.make("AgentEnv/Judge-Pointwise-Think-v0", data_size="small")
    env.reset(seed=0)
    label = env.unwrapped.label
    info = env.step(f"<think>The response\nmatches the reference.</think>\n{label}")[4]
    assert not info["invalid_action"] and info["success"]
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_env_says_whether_it_takes_multi_line_turns(env_id):
    cls = env_class(env_id)
    command_games = ("keydoor", "household", "textworld")
    assert (cls.multiline_actions or bool(cls.tools)) is (cls.family not in command_games)


# ---- 5. what reaches a terminal or a page shows control characters visibly ------------------------------------
class Noisy(TextEnv):
    """Observations with what a shell prints: NUL, ANSI colours, a bell, a C1 CSI, a carriage return, rich markup."""

    instructions = "Say anything."
    RESET = "start\x00 \x1b[31mred\x1b[0m [bold]markup[/bold]"
    STEP = "\x07bell \x9b2J \rover\ttab\nline \x7f del"

    def _reset(self, task_seed, options):
        return self.RESET, {}

    def _step(self, action):
        return self.STEP, 0.0, False, {}


def test_terminal_text_shows_controls_and_keeps_newlines_and_tabs():
    from agentenv.core import terminal_text

    assert terminal_text("a\x00b\x1b[31mc\td\ne\r\x9b\x7f\udcff") == "a\\x00b\\x1b[31mc\td\ne\\r\\x9b\\x7f\\udcff"
    assert terminal_text("plain text, é 中文\n\tok") == "plain text, é 中文\n\tok"


def test_render_escapes_controls_while_the_agent_reads_the_raw_text():
    env = Noisy(render_mode="ansi")
    observation, _ = env.reset(seed=0)
    assert observation == Noisy.RESET
    shown = env.render()
    assert not RAW_CONTROL.search(shown) and "\\x00 \\x1b[31mred\\x1b[0m" in shown
    observation, *_ = env.step("hi")
    assert observation == Noisy.STEP
    shown = env.render()
    assert not RAW_CONTROL.search(shown) and "\\x07bell \\x9b2J \\rover\ttab\nline \\x7f del" in shown


def test_play_shows_controls_and_markup_of_observations_as_text():
    from agentenv.cli import app

    gym.register("AgentEnvTests/Noisy-v0", entry_point=Noisy)
    try:
        result = CliRunner().invoke(
            app, ["play", "AgentEnvTests/Noisy-v0", "--seed", "0"], input="hi\n:quit\n", env={"COLUMNS": "200"}
        )
    finally:
        del gym.registry["AgentEnvTests/Noisy-v0"]
    assert result.exit_code == 0, result.output
    assert not RAW_CONTROL.search(result.output)
    assert "\\x1b[31mred\\x1b[0m [bold]markup[/bold]" in result.output
    assert "\\x07bell \\x9b2J \\rover" in result.output


def test_the_html_viewer_shows_controls_visibly(tmp_path):
    from agentenv.rollout import Episode, Turn, write_html

    episode = Episode("AgentEnvTests/Noisy-v0", "replay", 0, "noisy-0", "Say\x1b[2J anything.", Noisy.RESET, None)
    episode.turns.append(Turn("hi\x00", Noisy.STEP, 0.0, False))
    write_html([episode], tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert not RAW_CONTROL.search(page)
    assert "\\x00 \\x1b[31mred" in page and "\\x07bell" in page and "Say\\x1b[2J" in page and "hi\\x00" in page


REWARD_KNOBS = {
    "NumericMatch.extra_units": (lambda v: NumericMatch(extra_units={"mi": ("length", v)}), "extra_units"),
    "FormatPenalty.threshold": (lambda v: FormatPenalty(ExactMatch(), threshold=v), "threshold"),
    "CentredSigmoid.reference_value": (lambda v: CentredSigmoid(ExactMatch(), reference_value=v), "reference_value"),
}


@pytest.mark.parametrize("knob", list(REWARD_KNOBS))
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_reward_knobs_refuse_non_finite_numbers(knob, value):
    make_reward, field = REWARD_KNOBS[knob]
    with pytest.raises(ConfigError, match=field):
        make_reward(value)
