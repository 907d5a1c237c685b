"""Property-based fuzzing of every registered env (issue 15), with Hypothesis.

Whatever the agent sends (text with controls, surrogates and line breaks, bytes, dicts, nested lists, tool calls with
odd arguments as objects, dicts or text), ``step`` returns a valid 5-tuple with a finite reward and ``render`` shows
control characters escaped; whatever seeds, options and kwargs a user passes, ``reset`` and the constructor work or
raise a :class:`~agentenv.ConfigError`, exactly when the documented rules say so.

The ids come from the registry, so a new env is fuzzed as soon as it is registered. The budget is fixed for CI:
derandomized (the same examples on every run, no example database), ``EXAMPLES`` per id and property, fewer where a
reset builds a game, a corpus or a sandbox; one env per id serves every example (TextWorld with a one-game pool).
"""

import json
import math
import re

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentenv
from agentenv import ConfigError, ToolCall
from agentenv.core import _UNPRINTABLE, MAX_SEED, SPLIT_BASE, env_kwargs
from agentenv.errors import short_repr

pytestmark = pytest.mark.filterwarnings("ignore:.*render_mode.*:UserWarning")  # gym.make warns, then we refuse

# Every env a plugin registered (first-party families included), not the ones other tests register by hand.
IDS = [i for i in agentenv.env_ids() if agentenv.registry.card(i).source]
#: Ids whose reset builds something slow (a TextWorld game, the PyDocs corpus, an SWE sandbox).
EXPENSIVE = ("TextWorld", "SWE", "PyDocs")
#: Examples per id for each property: (cheap ids, expensive ids).
EXAMPLES = {"turns": (30, 15), "resets": (25, 12), "kwargs": (15, 10)}
#: Families whose reset is cheap whatever the kwargs: the kwargs property also plays a turn on them.
RESET_AFTER_KWARGS = ("KeyDoor", "Household")


def budget(prop: str, env_id: str) -> settings:
    cheap, expensive = EXAMPLES[prop]
    return settings(
        max_examples=expensive if any(k in env_id for k in EXPENSIVE) else cheap,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_kwargs(env_id: str) -> dict:
    """Each id as registered, with render on and the slow parts small: one TextWorld game (pool_size=1), one SWE
    task and short sandbox timeouts (a fuzzed bash command may be anything)."""
    kwargs: dict = {"render_mode": "ansi"}
    if "TextWorld" in env_id:
        kwargs["pool_size"] = 1
    if "SWE" in env_id:
        kwargs.update(pool_size=1, command_timeout=5.0, test_timeout=60.0)
    return kwargs


@pytest.fixture(scope="module")
def live():
    """One env per id for the whole module, made on first use and closed at the end."""
    envs: dict = {}

    def get(env_id: str):
        if env_id not in envs:
            envs[env_id] = agentenv.make(env_id, **fuzz_kwargs(env_id))
        return envs[env_id]

    yield get
    for env in envs.values():
        env.close()


class Shown:
    """A fuzzed value with a short repr, so that a failing example prints (a 100,000-level list's repr overflows)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return short_repr(self.value, 300)


def nested(depth: int, kind: str):
    value: object = []
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# ---- strategies -------------------------------------------------------------------------------------------------
#: Every code point: controls, NUL, lone surrogates, line and paragraph separators, bidi overrides.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
COMMANDS = [
    "look", "inventory", "go north", "take key", "open door", "help", "Yes", "No", "A", "B", "Yes 0.8",
    "<think>Reasoning.</think>\nYes", "look\ngo north", "look\r\n", "go\rnorth", "look\u2028go", "\x1b[31mlook",
    "go\x00north", "ls", "cat README.rst", "echo hi", "  ", "",
]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(COMMANDS),
    st.text(ANY_CHAR, max_size=40),
    st.text(st.sampled_from('look go north\n\r\t\x00\x1b[m<>{}":,\\\ud800\u202e'), max_size=60),
    st.builds(lambda piece, n: piece * n, st.sampled_from(["go north ", "x", "\n"]), st.sampled_from([1, 5000])),
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([5000, -80]).map(lambda e: 10**e if e > 0 else -(2**-e)),  # past int_max_str_digits; int64
    st.floats(),  # NaN and infinities included
    st.text(ANY_CHAR, max_size=20),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(ANY_CHAR, max_size=8), inner, max_size=3),
    max_leaves=8,
)


#: Values that fit a ``string`` argument yet probe the tools: paths out of the tree, special files, shell output with
#: escape sequences and binary bytes, Unicode; never a command that runs long (a fuzzed bash may be anything).
PROBES = [
    "README.rst", ".", "tests", "../../etc/passwd", "/etc/passwd", "/dev/zero", "/proc/self/environ", "",
    "ls -la", "echo hi", "printf '\\033[31mred\\000nul\\n'", "head -c 300 /dev/urandom", "seq 100000",
    "python -c 'print(1/0)'", "tests/test_x.py::test_y", "x" * 5000, "apple 1", "golden coin", "日本語 é ñ",
]  # fmt: skip
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))


def schema_value(schema: dict) -> st.SearchStrategy:
    """A value of the schema's JSON type (what passes the tool's schema check and reaches the tool)."""
    kind = schema.get("type")
    text = st.sampled_from(PROBES) | st.text(PRINTABLE, max_size=30)
    if kind == "integer":
        return st.integers(-3, 200) | st.sampled_from([2**31, 2**63, -(2**70)])
    if kind == "array":
        return st.lists(text, max_size=3)
    return text


def tool_call_parts(tools) -> st.SearchStrategy:
    """``(name, arguments)``: half the time a call that fits the tool's schema (so it runs), else the env's tool
    names (and others) with its argument names (and others) and odd values."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    names = st.sampled_from(sorted(schemas)) if schemas else st.just("search")

    @st.composite
    def parts(draw):
        name = draw(names)
        parameters = schemas.get(name, {"properties": {"query": {"type": "string"}}, "required": ["query"]})
        properties = parameters["properties"]
        if draw(st.integers(0, 3)) > 0:
            optional = draw(st.sets(st.sampled_from(sorted(properties)))) if properties else set()
            chosen = set(parameters.get("required", [])) | optional
            return name, {key: draw(schema_value(properties[key])) for key in sorted(chosen)}
        name = draw(st.one_of(st.just(name), st.text(ANY_CHAR, max_size=10)))
        keys = sorted(properties) or ["query"]
        arguments = draw(
            st.dictionaries(st.sampled_from(keys) | st.text(ANY_CHAR, max_size=6), JSON | TEXT, max_size=3)
        )
        if draw(st.booleans()):
            arguments[keys[0]] = odd_value(draw(st.sampled_from(["deep", "long", "NUL", "surrogate"])))
        return name, arguments

    return parts()


def odd_value(kind: str) -> object:
    """Built on demand: Hypothesis shows the elements of ``sampled_from``, and these have no printable repr."""
    if kind == "deep":
        return nested(100_000, "list")
    return "x" * 300_000 if kind == "long" else "a\x00b" if kind == "NUL" else "\ud800"


def as_text(call: dict, *, ascii_only: bool) -> str:
    try:
        body = json.dumps(call, ensure_ascii=ascii_only)
    except (ValueError, RecursionError):  # an int past int_max_str_digits, or too deep to encode: send it broken
        body = '{"name": "' + str(call.get("name"))[:20] + '", "arguments": {'
    return f"<tool_call>\n{body}\n</tool_call>"


def tool_call_form(parts: tuple, form: int) -> object:
    """One call, as a parsed ToolCall or a list of them, an OpenAI dict (arguments as object or JSON text), or text
    (a ``<tool_call>`` block, with non-ASCII escaped as ``\\uXXXX`` or raw)."""
    name, arguments = parts
    call = {"name": name, "arguments": arguments}
    if form == 0:
        return ToolCall(name, arguments)
    if form == 1:
        return [ToolCall(name, arguments)] * 2
    if form == 2:
        return call
    if form == 3:
        try:
            return {"function": {"name": name, "arguments": json.dumps(arguments)}}
        except (ValueError, RecursionError):
            return {"function": {"name": name, "arguments": "{"}}
    return as_text(call, ascii_only=form == 4)


def tool_call_forms(tools) -> st.SearchStrategy:
    return st.builds(tool_call_form, tool_call_parts(tools), st.integers(0, 5))


def turns(tools) -> st.SearchStrategy:
    """Any turn; tool envs get tool calls half the time (the other half reaches ``parse_action`` as junk)."""
    calls = tool_call_forms(tools)
    others = st.one_of(
        calls,
        TEXT,
        TEXT,
        st.binary(max_size=40),
        st.builds(lambda t: t.encode("utf-8", "surrogatepass"), TEXT),
        JSON,
        st.builds(nested, st.sampled_from([3, 100_000]), st.sampled_from(["list", "dict"])),
        st.sampled_from([None, 0, 1.5, math.nan, np.str_("look"), ToolCall("x"), [], [ToolCall("x"), "y"], object()]),
        st.sampled_from([5000, 100_000]).map(lambda n: "go north " * n),
    )
    if tools:
        others = st.integers(0, 2).flatmap(lambda pick: others if pick == 0 else calls)
    return others.map(Shown)


def check_step(env, out) -> None:
    """The step contract: a 5-tuple, an encodable observation in the space, a finite float reward equal to the sum
    of its named parts, bool flags, the documented info keys; and a render with no raw control character."""
    assert isinstance(out, tuple) and len(out) == 5
    observation, reward, terminated, truncated, info = out
    assert isinstance(observation, str) and observation in env.observation_space
    observation.encode("utf-8")  # no lone surrogate reaches the agent
    assert type(reward) is float and math.isfinite(reward), reward
    assert type(terminated) is bool and type(truncated) is bool
    assert type(info["invalid_action"]) is bool and type(info["success"]) is bool and isinstance(info["turn"], int)
    parts = info["reward_parts"]
    assert all(isinstance(k, str) and math.isfinite(v) for k, v in parts.items()), parts
    assert math.isclose(sum(parts.values()), reward, abs_tol=1e-6), (parts, reward)
    shown = env.render()
    assert isinstance(shown, str) and not _UNPRINTABLE.search(shown)


# ---- properties -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_no_turn_escapes_step(env_id, live):
    env = live(env_id)
    tools = list(env.unwrapped.tools)

    @budget("turns", env_id)
    @given(episode=st.lists(turns(tools), min_size=1, max_size=3), seed=st.integers(0, 2))
    def play(episode, seed):
        env.reset(seed=seed)
        for turn in episode:
            out = env.step(turn.value)
            check_step(env, out)
            if out[2] or out[3]:
                env.reset(seed=seed)

    play()


SEEDS = st.one_of(
    st.none(),
    st.integers(0, 5),
    st.integers(-(2**70), 2**70),
    st.sampled_from([MAX_SEED, MAX_SEED + 1, -1, True, False, 2**31, 1.0, "3", b"3", [1], np.int64(2), np.uint8(1)]),
    st.floats(),
    st.builds(np.int64, st.integers(-5, 5)),
)


def reset_options(tag: str, keys: tuple[str, ...], expensive: bool) -> st.SearchStrategy:
    # An expensive env only gets its one pool task as a real task id: another would build a new game or sandbox.
    numbers = [0] if expensive else [0, 1, SPLIT_BASE["test"] + 3]
    task_ids = st.one_of(
        st.sampled_from([f"{tag}-{n}" for n in numbers] + [None]),
        st.sampled_from([f"{tag}-{2**70}", f"{tag}-²", f"{tag}-", f"{tag}--1", "keydoor-s3k1d2-5", 5, ["x"]]),
        st.text(ANY_CHAR, max_size=12),
    )
    names = st.sampled_from(["task_id", "taskid", "seed", "Task_Id", *keys]) | st.text(ANY_CHAR, max_size=6)
    return st.one_of(
        st.none(),
        st.just({}),
        st.fixed_dictionaries({"task_id": task_ids}),
        st.dictionaries(names, task_ids | JSON, max_size=2),
        st.sampled_from([["task_id"], "task_id", 3, ("task_id", 1)]),
    )


def valid_seed(seed) -> bool:
    return seed is None or (
        isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED
    )


def valid_options(options, tag: str, keys: tuple[str, ...]) -> bool:
    if options is None:
        return True
    if not isinstance(options, dict) or not set(options) <= {"task_id", *keys}:
        return False
    task_id = options.get("task_id")
    if task_id is None:
        return True
    match = isinstance(task_id, str) and re.fullmatch(re.escape(tag) + r"-([0-9]+)", task_id)
    return bool(match) and int(match.group(1)) <= MAX_SEED


@pytest.mark.parametrize("env_id", IDS)
def test_reset_plays_or_raises_a_config_error_exactly_as_documented(env_id, live):
    env = live(env_id)
    base = env.unwrapped
    tag, keys = base.task_tag, tuple(base.reset_options)
    expensive = any(k in env_id for k in EXPENSIVE)

    @budget("resets", env_id)
    @given(seed=SEEDS.map(Shown), options=reset_options(tag, keys, expensive).map(Shown))
    def reset(seed, options):
        valid = valid_seed(seed.value) and valid_options(options.value, tag, keys)
        try:
            observation, info = env.reset(seed=seed.value, options=options.value)
        except ConfigError:
            assert not valid, "a valid seed and options were refused"
            return
        assert valid, "an invalid seed or options were accepted"
        assert isinstance(observation, str) and isinstance(info["task_id"], str)
        check_step(env, env.step("look"))

    reset()


KWARG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 50),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["sparse", "dense", "ratio", "train", "test", "tiny", "small", "world", "pydocs", "bm25", "yes"]),
    st.lists(st.sampled_from(["entity", "list", "pick", "heat", "x"]), max_size=3),
    st.sampled_from([("entity",), {"a": 1}, object(), b"bytes", np.float64(0.5), np.int64(3)]),
)


@pytest.mark.parametrize("env_id", IDS)
def test_the_constructor_works_or_raises_a_config_error(env_id):
    creator = gym.envs.registration.load_env_creator(agentenv.spec(env_id).entry_point)
    names = sorted(env_kwargs(creator) or {})

    @budget("kwargs", env_id)
    @given(kwargs=st.dictionaries(st.sampled_from([*names, "sise", "max_turn"]), KWARG_VALUES, max_size=3).map(Shown))
    def construct(kwargs):
        try:
            env = agentenv.make(env_id, **{**fuzz_kwargs(env_id), **kwargs.value})
        except ConfigError:
            return
        try:
            if any(k in env_id for k in RESET_AFTER_KWARGS):
                env.reset(seed=0)
                check_step(env, env.step("look"))
        finally:
            env.close()

    construct()
