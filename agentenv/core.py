"""The environment contract: :class:`TextEnv`, a ``gymnasium.Env`` whose actions and observations are text.

A subclass implements two hooks and inherits the rest of the contract:

* ``_reset(task_seed, options) -> (observation, info)`` — start the task that ``task_seed`` names; the same
  task seed must give the same task.
* ``_step(action) -> (observation, reward, terminated, info)`` — play one *valid* turn. ``action`` is a ``str``
  (or a :class:`~agentenv.spaces.ToolCall` / list of them when the env declares ``tools``).

Task seeds come in disjoint ranges per split (:data:`SPLITS`): with ``split="test"``, ``reset(seed=i)`` plays
test task ``i``; ``reset()`` draws one from the env's seeded generator; ``pool_size=N`` restricts a split to its
first ``N`` tasks (a fixed training pool); ``reset(options={"task_id": ...})`` replays any task.

Bad configuration fails at once with a :class:`~agentenv.errors.ConfigError` naming the field: constructor kwargs
are checked against the ``__init__`` annotations before ``__init__`` runs (a bool must be a bool, a float finite,
a list of str not a bare str) and then by each env's range and choice checks; ``reset``'s ``seed`` must be ``None``
or an int in [0, 2**63) (:data:`MAX_SEED`; never a bool) and ``options`` ``None`` or a dict whose keys are
``task_id`` and the env's :attr:`TextEnv.reset_options` (a misspelt key is not silently ignored).

:class:`TextEnv` itself parses the raw turn (wrong types, empty or huge turns, NUL bytes, ANSI escapes,
invalid UTF-8 and, in command games, a line break inside the turn (:attr:`TextEnv.multiline_actions`) become
*invalid turns*, handled by ``_step_invalid``, never exceptions), counts turns, truncates at ``max_turns`` like
Gymnasium's ``TimeLimit`` (``truncated=True``, ``terminated=False``), caps observation length, applies the
invalid-action penalty and fills the ``info`` keys in the table below. Observations reach the agent raw;
``render()`` shows them with control characters escaped (:func:`terminal_text`), as ``agentenv play`` and the HTML
viewer do.

An env pickles and deep-copies at any point of an episode, and the copy plays on from the same state: families
that hold what cannot be pickled (a game engine, a sandbox) leave it out and re-open it on unpickling, replaying
the episode so far (each says in its ``__setstate__`` what is restored).

==================  ==========  =================================================================================
key                 when        meaning
==================  ==========  =================================================================================
``task_id``         reset       ``"<task_tag>-<task_seed>"``; replays the task via ``reset(options={"task_id": ...})``
``turn_limit``      reset       turns allowed this episode (``max_turns``, or ``budget_factor`` x ``optimal_steps``)
``instructions``    reset       the system prompt for the agent (also ``env.instructions``)
``tools``           reset       JSON schemas of the env's tools (``[]`` for free-text envs)
``optimal_steps``   reset       length of a shortest solution when the env knows it, else ``None``
``turn``            step        1-based index of the turn just played
``success``         step        the task is solved
``invalid_action``  step        the turn was not a valid action (unparsable, no effect, bad input)
``invalid_reason``  step        why, when ``invalid_action`` is true
``reward_parts``    step        named components of this turn's reward (they sum to the reward)
==================  ==========  =================================================================================
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym

from agentenv.errors import ConfigError, check_choice, check_range, closest, short_repr
from agentenv.spaces import ActionSpace, TextSpace, ToolCall

Action = str | ToolCall | list[ToolCall]

SPLITS = ("train", "validation", "test")
#: Each split owns task seeds [base, base + SPLIT_SIZE): disjoint, and all below 2**31.
SPLIT_BASE = {"train": 0, "validation": 1_000_000_000, "test": 2_000_000_000}
SPLIT_SIZE = 100_000_000
#: The largest ``reset(seed=...)``: seeds are ints in [0, 2**63), what an int64 holds (numpy arrays, JSON readers
#: in most languages). Within that range a seed plays task ``seed % pool_size`` (``SPLIT_SIZE`` without a pool).
MAX_SEED = 2**63 - 1

# C0/C1 control characters other than tab, newline and carriage return; ESC covers ANSI escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Line breaks inside a turn (after stripping its ends): a text game reads one command per turn.
_LINE_BREAK = re.compile(r"[\r\n\u2028\u2029]")
# What a terminal acts on instead of showing: C0/C1 controls but tab and newline, DEL, lone surrogates, and the
# bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class InvalidAction:
    """A turn that could not be read as an action. ``reason`` is shown to the agent."""

    reason: str


def task_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """The task seeds of tasks ``start .. start+count-1`` of a split (what ``reset(seed=i)`` plays)."""
    check_choice("split", split, SPLITS)
    return [SPLIT_BASE[split] + i for i in range(start, start + count)]


def split_of(task_seed: int) -> str:
    """The split whose seed range holds ``task_seed`` (``"train"`` for a seed outside every range)."""
    for split, base in SPLIT_BASE.items():
        if base <= task_seed < base + SPLIT_SIZE:
            return split
    return "train"


def hash_split(key: str) -> str:
    """A fixed 80/10/10 train/validation/test split of a finite task set, by a hash of each task's id."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def parse_action(
    action: Any, *, max_length: int, accepts_tools: bool, multiline: bool = True
) -> Action | InvalidAction:
    """Read a raw agent turn into a ``str`` or tool call(s), or an :class:`InvalidAction` saying why not.

    With ``multiline=False`` (command games), a text turn must be one line once its ends are stripped. Never raises:
    whatever the agent produced is data.
    """
    if isinstance(action, (bytes, bytearray)):
        try:
            action = bytes(action).decode("utf-8")
        except UnicodeDecodeError:
            return InvalidAction("the turn is not valid UTF-8")
    if isinstance(action, dict):
        action = tool_call_from_dict(action)
    if isinstance(action, (ToolCall, list)):
        calls = [action] if isinstance(action, ToolCall) else action
        if not calls or not all(isinstance(c, ToolCall) for c in calls):
            return InvalidAction("expected a tool call or a non-empty list of tool calls")
        if not accepts_tools:
            return InvalidAction("this environment takes text actions, not tool calls")
        return action
    if isinstance(action, InvalidAction):
        return action
    if not isinstance(action, str):
        return InvalidAction(f"expected the turn as text, got {type(action).__name__}")
    if len(action) > max_length:
        return InvalidAction(f"the turn has {len(action)} characters; the limit is {max_length}")
    if _SURROGATE.search(action):
        return InvalidAction("the turn is not valid UTF-8")
    if _CONTROL.search(action):
        return InvalidAction("the turn contains control characters (NUL, escape sequences, ...)")
    if not action.strip():
        return InvalidAction("the turn is empty")
    if not multiline and _LINE_BREAK.search(action.strip()):
        return InvalidAction("the turn has several lines; send one command per turn, on one line")
    return str(action)  # np.str_ and other str subclasses become plain str


def tool_call_from_dict(raw: dict) -> ToolCall | InvalidAction:
    """Accept OpenAI-style ``{"name", "arguments"}`` or ``{"function": {...}}`` tool-call dicts."""
    body = raw.get("function", raw)
    if not isinstance(body, dict):
        return InvalidAction("a tool call's 'function' must be an object")
    name, arguments = body.get("name"), body.get("arguments", {})
    if not isinstance(name, str) or not name:
        return InvalidAction("a tool call needs a non-empty 'name'")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return InvalidAction(f"tool call {name!r}: arguments are not valid JSON ({e.msg})")
        except ValueError as e:  # an integer longer than Python's int_max_str_digits
            return InvalidAction(f"tool call {name!r}: arguments are not valid JSON ({e})")
        except RecursionError:
            return InvalidAction(f"tool call {name!r}: arguments are not valid JSON (nested too deeply)")
    if not isinstance(arguments, dict):
        return InvalidAction(f"tool call {name!r}: arguments must be a JSON object")
    return ToolCall(name, arguments)


class TextEnv(gym.Env[str, Action]):
    """Base class of every AgentEnv environment (see the module docstring for the contract)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}
    #: The env family, shown by ``agentenv list``.
    family: ClassVar[str] = ""
    #: Reward densities this env implements (the ``reward=`` kwarg); see ``agentenv.rewards.shaping``.
    reward_modes: ClassVar[tuple[str, ...]] = ("sparse",)
    #: The module that registers this family's reward hacks for ``agentenv redteam`` (``agentenv.redteam``).
    hack_module: ClassVar[str | None] = None
    #: JSON schemas of tools; empty for free-text envs.
    tools: ClassVar[tuple[dict[str, Any], ...]] = ()
    #: Whether a text turn may span lines. Command games (the default) read one command per turn, so a turn with a
    #: line break inside is an invalid turn; envs that read prose (a verdict after its reasoning) set it, and envs
    #: with ``tools`` always take several lines (a tool call in text spans lines).
    multiline_actions: ClassVar[bool] = False
    #: Keys of ``reset(options=...)`` that ``_reset`` reads, besides ``task_id``; any other key is a ConfigError.
    reset_options: ClassVar[tuple[str, ...]] = ()
    #: Default system prompt; subclasses may set ``self.instructions`` per task.
    instructions: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> TextEnv:
        _check_kwargs(cls, kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        *,
        max_turns: int = 50,
        budget_factor: float | None = None,
        split: str = "train",
        pool_size: int | None = None,
        reward: str = "sparse",
        invalid_action_penalty: float = 0.0,
        max_action_length: int = 4096,
        max_observation_length: int = 16_384,
        render_mode: str | None = None,
    ):
        check_range("max_turns", max_turns, 1, integer=True)
        if budget_factor is not None:
            check_range("budget_factor", budget_factor, 0.01)
        check_choice("split", split, SPLITS)
        if pool_size is not None:
            check_range("pool_size", pool_size, 1, SPLIT_SIZE, integer=True)
        check_choice("reward", reward, self.reward_modes)
        check_range("invalid_action_penalty", invalid_action_penalty, 0.0)
        check_range("max_action_length", max_action_length, 1, integer=True)
        check_range("max_observation_length", max_observation_length, 64, integer=True)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.max_turns = self.turn_limit = max_turns
        self.budget_factor = budget_factor
        self.split, self.pool_size = split, pool_size
        self.task_seed: int | None = None
        self.reward_mode = reward
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.render_mode = render_mode
        self.observation_space = TextSpace(max_observation_length)
        self.action_space = ActionSpace(max_action_length)
        self.turn = 0
        self._started = False
        self._done = False
        self._last_action: str | None = None
        self._last_observation = ""

    # ---- hooks for subclasses ---------------------------------------------------------------------------
    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _reset(task_seed, options)")

    @property
    def task_tag(self) -> str:
        """Names the task family and its knobs in task ids; override when knobs change the task."""
        return type(self).__name__.lower()

    def _step(self, action: Action) -> tuple[str, float, bool, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _step(action)")

    def _step_invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        """The outcome of an unreadable turn. Override to give end-of-episode rewards on such turns too."""
        return f"Invalid action: {reason}.", 0.0, False, {}

    # ---- the Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        seed = _check_seed(seed)
        options = self._check_options(options)
        super().reset(seed=seed)
        self.turn = 0
        self._started, self._done = True, False
        self.task_seed = self._task_seed(seed, options.pop("task_id", None))
        observation, info = self._reset(self.task_seed, options)
        info = {
            "instructions": self.instructions,
            "tools": copy.deepcopy(list(self.tools)),
            "optimal_steps": None,
            **info,
            "task_id": f"{self.task_tag}-{self.task_seed}",
        }
        self.turn_limit = self._turn_limit(info["optimal_steps"])
        info["turn_limit"] = self.turn_limit
        self._last_action, self._last_observation = None, self._fit(observation)
        return self._last_observation, info

    def _check_options(self, options: Any) -> dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"options={short_repr(options)} must be a dict (or None)")
        allowed = ("task_id", *self.reset_options)
        for key in options:
            if key not in allowed:
                hint = closest(key if isinstance(key, str) else short_repr(key), allowed, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(
                    f"unknown reset option {short_repr(key)} for {type(self).__name__}.{did_you_mean} "
                    f"allowed: {', '.join(allowed)}"
                )
        return dict(options)

    def _task_seed(self, seed: int | None, task_id: Any) -> int:
        if task_id is not None:
            tag, _, number = task_id.rpartition("-") if isinstance(task_id, str) else ("", "", "")
            if (
                tag != self.task_tag
                or not (number.isascii() and number.isdigit())
                or len(number) > len(str(MAX_SEED))
                or int(number) > MAX_SEED
            ):
                raise ConfigError(
                    f"options['task_id']={short_repr(task_id)} is not a task of this env; "
                    f"expected '{self.task_tag}-<seed>' with a seed in [0, 2**63)"
                )
            return int(number)
        span = self.pool_size or SPLIT_SIZE
        index = seed if seed is not None else int(self.np_random.integers(span))
        return SPLIT_BASE[self.split] + index % span

    def _turn_limit(self, optimal_steps: int | None) -> int:
        if self.budget_factor is None:
            return self.max_turns
        if optimal_steps is None:
            raise ConfigError(f"budget_factor needs optimal_steps, which {type(self).__name__} does not know")
        return max(1, math.ceil(self.budget_factor * optimal_steps))

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over (terminated or truncated); call reset()")
        self.turn += 1
        parsed = parse_action(
            action,
            max_length=self.action_space.max_length,
            accepts_tools=bool(self.tools),
            multiline=self.multiline_actions or bool(self.tools),
        )
        if isinstance(parsed, InvalidAction):
            observation, reward, terminated, info = self._step_invalid(parsed.reason)
            info = {**info, "invalid_action": True, "invalid_reason": parsed.reason}
        else:
            observation, reward, terminated, info = self._step(parsed)
        reward = float(reward)
        parts = {k: float(v) for k, v in info.get("reward_parts", {"task": reward}).items()}
        invalid = bool(info.get("invalid_action", False))
        if invalid and self.invalid_action_penalty:
            reward -= self.invalid_action_penalty
            parts["invalid_action_penalty"] = -self.invalid_action_penalty
        terminated = bool(terminated)
        truncated = not terminated and self.turn >= self.turn_limit
        self._done = terminated or truncated
        info = {"success": False, **info, "turn": self.turn, "invalid_action": invalid, "reward_parts": parts}
        self._last_action = _describe(parsed, action)
        self._last_observation = self._fit(observation)
        return self._last_observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        """The last turn and observation as text for a terminal: control characters shown as escapes (``\\x1b``),
        so tool output cannot move the cursor or recolour the screen. The agent still reads the raw observation."""
        if self.render_mode != "ansi":
            return None
        head = f"[turn {self.turn}/{self.turn_limit}]"
        if self._last_action is not None:
            head += f" > {self._last_action}"
        return terminal_text(f"{head}\n{self._last_observation}\n")

    def close(self) -> None:
        """Release resources. Safe to call any number of times."""
        self._started = False

    # ---- helpers for subclasses and tools -------------------------------------------------------------------
    @property
    def system_prompt(self) -> str:
        return self.instructions

    @property
    def turns_left(self) -> int:
        return max(0, self.turn_limit - self.turn)

    def prepare_task(self, task_seed: int) -> None:
        """Build ahead of time what a task needs (e.g. generate and cache a game). No-op by default.

        ``agentenv prepare`` calls this for a split's tasks in parallel, so training never waits on generation.
        """

    def walkthrough(self) -> list[str] | None:
        """Actions that solve the current task from the current state, when the env can plan; else ``None``."""
        return None

    def admissible_commands(self) -> list[str] | None:
        """Actions that are valid in the current state, when the env can enumerate them; else ``None``."""
        return None

    def _fit(self, observation: str) -> str:
        limit = self.observation_space.max_length
        if len(observation) <= limit:
            return observation
        note = f"\n[... {len(observation) - limit} characters truncated]"
        return observation[: limit - len(note)] + note


def terminal_text(text: str) -> str:
    """``text`` safe to print on a terminal or a page: control characters other than newline and tab (NUL, ANSI
    escape sequences, C1 controls, carriage returns), DEL, lone surrogates and bidirectional overrides become visible
    escapes such as ``\\x1b`` or ``\\r``. For what people read; the agent's observations stay raw."""
    return _UNPRINTABLE.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\r" if code == 13 else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _describe(parsed: Action | InvalidAction, raw: Any) -> str:
    """The turn as ``render`` shows it; bounded and safe on any value (huge, deeply nested, unprintable)."""
    if isinstance(parsed, InvalidAction):
        return short_repr(raw)
    if isinstance(parsed, str):
        return parsed
    calls = [parsed] if isinstance(parsed, ToolCall) else parsed
    return "; ".join(f"{c.name if isinstance(c.name, str) else short_repr(c.name)}({_arguments_text(c.arguments)})"
                     for c in calls)  # fmt: skip


def _arguments_text(arguments: Any) -> str:
    try:
        return json.dumps(arguments, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # not JSON, or nested too deeply: shown only
        return short_repr(arguments, limit=200)


def _check_seed(seed: Any) -> int | None:
    """``reset``'s seed: ``None`` or an int in [0, :data:`MAX_SEED`] (numpy integers too; never a bool)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={short_repr(seed)} must be an int in [0, 2**63) or None")
    return int(seed)


def _check_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    """Constructor kwargs, checked before ``__init__`` runs (so ``gym.make`` too): unknown names fail with the
    allowed ones, and each value must fit its ``__init__`` annotation (:func:`type_problem`)."""
    allowed = env_kwargs(cls)
    if allowed is None:
        return
    for name in kwargs:
        if name not in allowed:
            hint = closest(name, allowed, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"{cls.__name__} got an unknown keyword argument {name!r}.{did_you_mean} "
                f"Allowed: {', '.join(sorted(allowed))}"
            )
    hints = env_kwarg_types(cls)
    for name, value in kwargs.items():
        expected = type_problem(value, hints.get(name, Any))
        if expected:
            raise ConfigError(f"{name}={short_repr(value)} must be {expected}")


def _init_chain(cls: type) -> tuple[list[Any], bool]:
    """The ``__init__`` functions that take an env class's keyword arguments, most derived first, and whether the
    last one still forwards ``**kwargs`` to a base that does not name them (an open signature)."""
    inits = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        inits.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            return inits, False  # this __init__ forwards nothing further up
    return inits, True


def _keyword_parameters(init: Any) -> dict[str, inspect.Parameter]:
    return {
        n: p
        for n, p in inspect.signature(init).parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def env_kwargs(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword arguments accepted by an env class (its own and its bases' ``__init__``); ``None`` if open."""
    inits, open_ended = _init_chain(cls)
    if open_ended:
        return None
    params: dict[str, inspect.Parameter] = {}
    for init in inits:
        for name, p in _keyword_parameters(init).items():
            params.setdefault(name, p)
    return params


def env_kwarg_types(cls: type) -> dict[str, Any]:
    """The annotation of each keyword argument of an env class, resolved to types (``Any`` where there is none or
    it cannot be resolved). The most derived ``__init__`` that names an argument decides its type."""
    hints: dict[str, Any] = {}
    for init in _init_chain(cls)[0]:
        try:
            resolved = typing.get_type_hints(init)
        except Exception:  # a name only imported for type checkers: resolve what can be, one at a time
            resolved = {}
            for name, p in _keyword_parameters(init).items():
                try:
                    resolved[name] = (
                        eval(p.annotation, init.__globals__) if isinstance(p.annotation, str) else p.annotation
                    )
                except Exception:
                    resolved[name] = Any
        for name, p in _keyword_parameters(init).items():
            hints.setdefault(name, resolved.get(name, Any) if p.annotation is not p.empty else Any)
    return hints


def type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` must be to fit the annotation ``hint`` (e.g. ``"a bool (True or False)"``), or ``None`` if it
    fits. Strict where configs go wrong: a bool is not an int, a str is not a list of str, a float is finite;
    annotations it does not know (type variables, protocols) admit anything."""
    return None if _admits(value, hint) else _hint_text(hint)


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    return typing.get_args(hint) if origin is typing.Union or origin is types.UnionType else None


def _admits(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    arms = _union_args(hint)
    if arms is not None:
        return any(_admits(value, arm) for arm in arms)
    if hint is None or hint is type(None):
        return value is None
    if typing.get_origin(hint) is typing.Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value))
        )
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return isinstance(value, (str, os.PathLike))
    container = typing.get_origin(hint) or hint
    if not isinstance(container, type):
        return True
    try:
        if not isinstance(value, container):
            return False
    except TypeError:  # a protocol that is not runtime-checkable, a TypedDict: not checked
        return True
    if isinstance(value, (str, bytes)) and not issubclass(container, (str, bytes)):
        return False  # a bare "name" is not a list of names
    args = typing.get_args(hint)
    if not args or not isinstance(value, (list, tuple, set, frozenset, dict)):
        return True
    if isinstance(value, dict):
        return len(args) != 2 or all(_admits(k, args[0]) and _admits(v, args[1]) for k, v in value.items())
    if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return len(value) == len(args) and all(_admits(v, a) for v, a in zip(value, args, strict=True))
    return all(_admits(v, args[0]) for v in value)


def _hint_text(hint: Any) -> str:
    arms = _union_args(hint)
    if arms is not None:
        return " or ".join(dict.fromkeys(_hint_text(arm) for arm in arms))
    if hint is None or hint is type(None):
        return "None"
    if typing.get_origin(hint) is typing.Literal:
        return f"one of {list(typing.get_args(hint))}"
    named = {bool: "a bool (True or False)", int: "an int", float: "a finite number", str: "a str"}
    if hint in named:
        return named[hint]
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return "a path"
    container = typing.get_origin(hint) or hint
    args = typing.get_args(hint)
    name = getattr(container, "__name__", str(container))
    name = {"Sequence": "list", "MutableSequence": "list", "Iterable": "list", "Collection": "list"}.get(name, name)
    name = {"Mapping": "dict", "MutableMapping": "dict"}.get(name, name)
    if name == "dict" and len(args) == 2:
        return f"a dict of {_plural(args[0])} to {_plural(args[1])}"
    if args and (container is not tuple or args[-1] is Ellipsis):
        return f"a {name} of {_plural(args[0])}"
    return f"a {name}"


def _plural(hint: Any) -> str:
    text = _hint_text(hint)
    return text.split(" ", 1)[1] if text.startswith(("a ", "an ")) else text
