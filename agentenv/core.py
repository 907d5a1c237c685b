"""The environment contract: :class:`TextEnv`, a ``gymnasium.Env`` whose actions and observations are text.

A subclass implements two hooks and inherits the rest of the contract:

* ``_reset(task_seed, options) -> (observation, info)`` — start the task that ``task_seed`` names; the same
  task seed must give the same task.
* ``_step(action) -> (observation, reward, terminated, info)`` — play one *valid* turn. ``action`` is a ``str``
  (or a :class:`~agentenv.spaces.ToolCall` / list of them when the env declares ``tools``).

Task seeds come in disjoint ranges per split (:data:`SPLITS`): with ``split="test"``, ``reset(seed=i)`` plays
test task ``i``; ``reset()`` draws one from the env's seeded generator; ``pool_size=N`` restricts a split to its
first ``N`` tasks (a fixed training pool); ``reset(options={"task_id": ...})`` replays any task.

:class:`TextEnv` itself parses the raw turn (wrong types, empty or huge turns, NUL bytes, ANSI escapes and
invalid UTF-8 become *invalid turns*, handled by ``_step_invalid``, never exceptions), counts turns, truncates
at ``max_turns`` like Gymnasium's ``TimeLimit`` (``truncated=True``, ``terminated=False``), caps observation
length, applies the invalid-action penalty and fills the documented ``info`` keys:

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
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym

from agentenv.errors import ConfigError, check_choice, check_range, closest
from agentenv.spaces import ActionSpace, TextSpace, ToolCall

Action = str | ToolCall | list[ToolCall]

SPLITS = ("train", "validation", "test")
#: Each split owns task seeds [base, base + SPLIT_SIZE): disjoint, and all below 2**31.
SPLIT_BASE = {"train": 0, "validation": 1_000_000_000, "test": 2_000_000_000}
SPLIT_SIZE = 100_000_000

# C0/C1 control characters other than tab, newline and carriage return; ESC covers ANSI escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


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


def parse_action(action: Any, *, max_length: int, accepts_tools: bool) -> Action | InvalidAction:
    """Read a raw agent turn into a ``str`` or tool call(s), or an :class:`InvalidAction` saying why not.

    Never raises: whatever the agent produced is data.
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
        super().reset(seed=seed)
        self.turn = 0
        self._started, self._done = True, False
        options = dict(options or {})
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

    def _task_seed(self, seed: int | None, task_id: Any) -> int:
        if task_id is not None:
            tag, _, number = str(task_id).rpartition("-")
            if tag != self.task_tag or not number.isdigit():
                raise ConfigError(
                    f"options['task_id']={task_id!r} is not a task of this env; expected '{self.task_tag}-<seed>'"
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
        parsed = parse_action(action, max_length=self.action_space.max_length, accepts_tools=bool(self.tools))
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
        if self.render_mode != "ansi":
            return None
        head = f"[turn {self.turn}/{self.turn_limit}]"
        if self._last_action is not None:
            head += f" > {self._last_action}"
        return f"{head}\n{self._last_observation}\n"

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


def _describe(parsed: Action | InvalidAction, raw: Any) -> str:
    if isinstance(parsed, InvalidAction):
        text = repr(raw)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(parsed, str):
        return parsed
    calls = [parsed] if isinstance(parsed, ToolCall) else parsed
    return "; ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in calls)


def _check_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    """Unknown constructor kwargs fail with the list of allowed ones (works for ``gym.make`` too)."""
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


def env_kwargs(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword arguments accepted by an env class (its own and its bases' ``__init__``); ``None`` if open."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        signature = inspect.signature(init)
        own = {n: p for n, p in signature.parameters.items() if n != "self"}
        var_kw = any(p.kind is p.VAR_KEYWORD for p in own.values())
        for name, p in own.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(name, p)
        if not var_kw:
            return params  # this __init__ forwards nothing further up
    return None
