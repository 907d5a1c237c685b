"""TRL interop: AgentEnv environments as ``GRPOTrainer(environment_factory=...)`` classes.

>>> from agentenv.integrations.trl import ensure_tool_template, environment_factory, trl_dataset
>>> Env = environment_factory("AgentEnv/KeyDoor-s2k0d1-v0")
>>> trainer = GRPOTrainer(model, args=args, train_dataset=trl_dataset("AgentEnv/KeyDoor-s2k0d1-v0", n=64),
...                       processing_class=ensure_tool_template(tokenizer), environment_factory=Env)

What TRL (1.16) does with the class: it instantiates it with no arguments (one instance per rollout, reused across
batches); before each rollout it calls ``reset(**row)`` with every column of the dataset row and appends the returned
string to the prompt's last user message; every public method other than ``reset`` and ``get_reward`` is a tool,
described to the model from its signature and Google-style docstring; each tool call the model makes runs the method
and its return value becomes a ``tool`` message; the rollout ends when the model answers without a tool call (or at
``max_completion_length`` / ``max_tool_calling_iterations``); then ``get_reward()`` scores it, logged as
``rewards/<class name>``.
"""

from __future__ import annotations

import inspect
import itertools
import keyword
import re
from collections.abc import Sequence
from functools import reduce
from operator import or_
from typing import Any, ClassVar, Literal

import gymnasium
from gymnasium.envs.registration import EnvSpec

from agentenv.chat_format import ChatFormat
from agentenv.core import SPLIT_BASE, SPLIT_SIZE, TextEnv
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.registry import make, resolve_id
from agentenv.spaces import ToolCall

TRL_EXTRA = "pip install 'agentenv[trl]'"
#: What ``get_reward`` returns: the episode return (sum of step rewards) or 1.0/0.0 for success.
SCORES = ("return", "success")
#: The tool answer once the episode has ended.
EPISODE_OVER = "The episode is over; actions have no effect any more. Answer without calling a tool."
#: The last assistant turn of :func:`walkthrough_chats`: an answer without a tool call, which ends TRL's rollout.
FINAL_ANSWER = "Done."

_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


class AgentEnvTool:
    """Base of the classes :func:`environment_factory` builds: one AgentEnv episode per ``reset``, played by tools.

    Public methods are TRL tools, so helpers here are private. After ``reset``, ``task_id``, ``observation`` (the
    last env text), ``info`` (the last info dict), ``episode_return``, ``success``, ``done`` and ``turns`` describe
    the episode; ``env`` is the Gymnasium env.
    """

    env_id: ClassVar[str | EnvSpec] = ""
    env_kwargs: ClassVar[dict[str, Any]] = {}
    score: ClassVar[str] = "return"
    group_size: ClassVar[int] = 1
    _seeds: ClassVar[itertools.count]

    def __init__(self) -> None:
        self.env = make(self.env_id, **self.env_kwargs)
        self.observation = ""
        self.task_id = ""
        self.info: dict[str, Any] = {}
        self.episode_return = 0.0
        self.success = False
        self.done = False
        self.turns = 0
        self._started = False

    def reset(self, **kwargs: Any) -> str:
        """Start an episode and return its first observation (prefixed by the instructions unless the prompt's
        system message has them).

        The task is the row's ``task_id`` column, else its ``seed`` column (``env.reset(seed=seed)``: task ``seed``
        of the env's split), else the next task of the split in order, each played by ``group_size`` consecutive
        resets (of any instance of the class). Other columns (``prompt``, ...) are ignored.
        """
        seed, task_id = kwargs.get("seed"), kwargs.get("task_id")
        if seed is None and task_id is None:
            seed = next(type(self)._seeds) // self.group_size
        options = {"task_id": task_id} if task_id is not None else None
        observation, info = self.env.reset(seed=None if seed is None else int(seed), options=options)
        self.observation, self.info, self.task_id = observation, info, info["task_id"]
        self.episode_return, self.success, self.done, self.turns = 0.0, False, False, 0
        self._started = True
        prompt = kwargs.get("prompt")
        instructions = info.get("instructions") or ""
        text = observation
        if instructions and not _has_system_message(prompt, instructions):
            text = f"{instructions}\n\n{observation}"
        last = prompt[-1].get("content") if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) else ""
        if isinstance(last, str) and last and not last[-1].isspace():
            text = f"\n\n{text}"
        return text

    def get_reward(self) -> float:
        """The episode's score: its return (sum of step rewards) or, with ``score="success"``, 1.0 if solved."""
        if self.score == "success":
            return float(self.success)
        return float(self.episode_return)

    def _step(self, action: Any) -> str:
        """Play one turn; returns the observation (with a note when the episode ends), or :data:`EPISODE_OVER`."""
        if not self._started:
            raise RuntimeError("call reset() before playing a turn")
        if self.done:
            return EPISODE_OVER
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.turns += 1
        self.episode_return += float(reward)
        self.success = self.success or bool(info.get("success"))
        self.done = bool(terminated or truncated)
        self.observation, self.info = observation, info
        if not self.done:
            return observation
        if self.success:
            note = "The episode is over: the task is solved."
        elif truncated:
            note = f"The episode is over: the turn limit ({self.turns} turns) is reached."
        else:
            note = "The episode is over."
        return f"{observation}\n\n{note}"


def environment_factory(
    env_id: str | EnvSpec, *, score: str = "return", group_size: int = 1, **env_kwargs: Any
) -> type[AgentEnvTool]:
    """A class for ``GRPOTrainer(environment_factory=...)`` playing ``env_id`` (a registered id or an ``EnvSpec``)
    made with ``env_kwargs``.

    Text-command envs get one tool, ``act(command: str) -> str``; envs that declare ``tools`` get one method per tool
    with the tool's name, parameters (typed from its JSON schema) and description. Each call plays one turn.
    ``score`` picks what ``get_reward`` returns (:data:`SCORES`). Without a dataset (TRL then resets with empty
    prompts), each task is played by ``group_size`` consecutive resets: set it to ``num_generations`` so that a GRPO
    group shares its task (one training process). See :class:`AgentEnvTool` for the rest.
    """
    check_choice("score", score, SCORES)
    check_range("group_size", group_size, 1, integer=True)
    env_id = resolve_id(env_id) if isinstance(env_id, str) else env_id
    label = env_id if isinstance(env_id, str) else env_id.id
    probe = make(env_id, **env_kwargs)
    try:
        base = probe.unwrapped
        if not isinstance(base, TextEnv):
            raise ConfigError(
                f"{label} is not an AgentEnv TextEnv ({type(base).__name__}); it cannot be played by text"
            )
        schemas = list(base.tools)
        instructions = base.instructions
    finally:
        probe.close()
    namespace: dict[str, Any] = {
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs),
        "score": score,
        "group_size": group_size,
        "_seeds": itertools.count(),
        "__module__": __name__,
        "__doc__": f"{label} as a TRL environment: reset() starts a task; tools play turns.",
    }
    if schemas:
        for schema in schemas:
            method = _tool_method(schema)
            if method.__name__ in namespace or hasattr(AgentEnvTool, method.__name__):
                raise ConfigError(f"{label}: tool name {method.__name__!r} clashes with the TRL class's own members")
            namespace[method.__name__] = method
    else:
        namespace["act"] = _act_method(instructions)
    name = re.sub(r"\W+", "_", label.split("/")[-1]).strip("_") or "AgentEnv"
    return type(name, (AgentEnvTool,), namespace)


def trl_dataset(env_id: str | EnvSpec, split: str = "train", n: int = 64, *, start: int = 0, **env_kwargs: Any) -> Any:
    """A ``datasets.Dataset`` of tasks ``start .. start+n-1`` of ``split`` for ``GRPOTrainer(train_dataset=...)``.

    Columns: ``prompt`` (a system message with the env's instructions and an empty user message, which TRL fills
    with what ``reset`` returns), ``seed`` (the task's index in the split) and ``task_id`` (which ``reset`` plays,
    so the rows replay the same tasks whatever split the environment class was made with).
    """
    try:
        from datasets import Dataset
    except ImportError as e:
        raise ImportError(f"trl_dataset needs the 'datasets' package (the 'trl' extra): {TRL_EXTRA}") from e
    check_range("n", n, 1, integer=True)
    check_range("start", start, 0, integer=True)
    env = make(env_id, split=split, **env_kwargs)
    try:
        base = env.unwrapped
        instructions, tag = base.instructions, base.task_tag
        span = getattr(base, "pool_size", None) or SPLIT_SIZE
    finally:
        env.close()
    seeds = list(range(start, start + n))
    prompt = [{"role": "system", "content": instructions}, {"role": "user", "content": ""}]
    return Dataset.from_dict(
        {
            "prompt": [prompt] * n,
            "seed": seeds,
            "task_id": [f"{tag}-{SPLIT_BASE[split] + seed % span}" for seed in seeds],
        }
    )


def walkthrough_chats(
    env_id: str | EnvSpec,
    split: str = "train",
    n: int = 64,
    *,
    start: int = 0,
    final_answer: str = FINAL_ANSWER,
    only_success: bool = True,
    **env_kwargs: Any,
) -> list[list[dict[str, Any]]]:
    """SFT demonstrations for a model GRPOTrainer will train with :func:`environment_factory`: the env's walkthroughs
    of tasks ``start .. start+n-1`` of ``split`` as the conversations TRL's tool loop builds.

    Each chat is the prompt :func:`trl_dataset` gives (system message: the instructions; user message: what ``reset``
    returns), then per walkthrough step an assistant message with ``tool_calls`` (``act(command)``, or the env's own
    tools) and the ``tool`` message the class's method returned, then ``final_answer`` (a turn without a tool call,
    which ends TRL's rollout). The steps are played through the class, so the tool texts are the ones TRL shows.
    Encode them with :class:`ToolCallChatFormat` (e.g. ``agentenv.policies.rl.train_sft``) or give them to TRL's
    ``SFTTrainer`` (``messages`` column). Episodes the walkthrough does not solve are dropped unless ``only_success``
    is false; envs without a walkthrough raise :class:`ConfigError`.
    """
    check_range("n", n, 1, integer=True)
    check_range("start", start, 0, integer=True)
    Env = environment_factory(env_id, split=split, **env_kwargs)
    env = Env()
    tools = [name for name, _ in inspect.getmembers(Env, inspect.isfunction) if _is_tool_name(name)]
    chats = []
    try:
        instructions = env.env.unwrapped.instructions
        for seed in range(start, start + n):
            prompt = [{"role": "system", "content": instructions}, {"role": "user", "content": ""}]
            first = env.reset(seed=seed, prompt=prompt)
            chat = [prompt[0], {"role": "user", "content": first}]
            plan = env.env.unwrapped.walkthrough()
            if plan is None:
                raise ConfigError(f"{Env.__name__}: the env has no walkthrough to demonstrate")
            for step in plan:
                if env.done:
                    break
                for name, arguments in _walkthrough_calls(step, tools, env):
                    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
                    chat.append({"role": "assistant", "content": "", "tool_calls": [call]})
                    chat.append({"role": "tool", "name": name, "content": str(getattr(env, name)(**arguments))})
            chat.append({"role": "assistant", "content": final_answer})
            if env.success or not only_success:
                chats.append(chat)
    finally:
        env.env.close()
    return chats


class ToolCallChatFormat(ChatFormat):
    """A :class:`~agentenv.chat_format.ChatFormat` for GRPOTrainer's layout: the tokenizer's (tool-calling) template
    with ``tools`` in the system turn, as TRL renders its prompts, and assistant messages with ``tool_calls`` encoded
    as the template writes them (``<tool_call>`` JSON blocks for Qwen2.5's), so
    :meth:`~agentenv.chat_format.ChatFormat.encode_chat` gives the token ids a TRL rollout of the same turns has.

    ``tools``: the environment class (its tool methods), or functions / JSON schemas as ``apply_chat_template`` takes.
    """

    def __init__(self, tokenizer: Any, tools: Any, *, chat_template: str | None = None):
        if isinstance(tools, type):
            tools = [f for name, f in inspect.getmembers(tools, inspect.isfunction) if _is_tool_name(name)]
        schemas = [_json_schema(t) if callable(t) else t for t in tools]
        super().__init__(tokenizer, chat_template=chat_template, tools=schemas)

    def assistant_text(self, message: dict[str, Any]) -> str:
        """What the model writes for ``message`` (an assistant message, with ``tool_calls`` or not), without the
        end-of-turn token."""
        prompt = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        base = self.render(prompt, add_generation_prompt=True)
        full = self.render([*prompt, {"content": "", **message}], add_generation_prompt=False)
        end = full.rfind(self.end_of_turn)
        if not full.startswith(base) or end < len(base):
            raise ConfigError("the chat template does not render an assistant turn after its generation prompt")
        return full[len(base) : end]

    def encode_chat(self, messages: Sequence[dict]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        rendered = [
            {"role": "assistant", "content": self.assistant_text(m)}
            if m.get("role") == "assistant" and m.get("tool_calls")
            else m
            for m in messages
        ]
        return super().encode_chat(rendered)


class ToolLoop(gymnasium.Wrapper):
    """An env played as GRPOTrainer's tool loop plays it, for our rollout engine (parse turns with
    ``parse_turn(text, style="hermes", tools=fmt.tools)``): a turn's ``act(command)`` call is the env's command, a call
    of one of a tool env's own tools goes to it as is, and a turn without a call ends the episode unsolved (TRL ends
    the rollout there). Of several calls in one turn the first is played (TRL runs them all; one is what
    ``walkthrough_chats`` teaches)."""

    def step(self, action: Any) -> Any:
        if isinstance(action, list) and action:
            action = action[0]
        if isinstance(action, ToolCall) and action.name == "act" and not getattr(self.env.unwrapped, "tools", None):
            return self.env.step(str(action.arguments.get("command", "")))
        if isinstance(action, ToolCall):
            return self.env.step(action)
        return "", 0.0, True, False, {"success": False, "no_tool_call": True}


def evaluate_tool_loop(
    model: Any, tokenizer: Any, env_id: str, seeds: Sequence[int], *, split: str = "test", max_new_tokens: int = 64,
    max_context_tokens: int = 2048, temperature: float = 0.0, num_envs: int = 8, **env_kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """Success of ``model`` on tasks ``seeds`` of ``split``, played in GRPOTrainer's layout (:class:`ToolLoop`,
    :class:`ToolCallChatFormat`; greedy by default) by our rollout engine: ``{"success_rate", "solved", "episodes",
    "mean_turns", "solved_tasks"}``. The tokenizer must carry a tool-calling template (:func:`ensure_tool_template`).
    """
    from agentenv.policies.local import Sampling, TransformersPolicy
    from agentenv.policies.tools import parse_turn
    from agentenv.rollout import rollout

    fmt = ToolCallChatFormat(tokenizer, environment_factory(env_id, **env_kwargs))
    envs = [ToolLoop(make(env_id, split=split, **env_kwargs)) for _ in range(max(1, min(num_envs, len(seeds))))]
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens, temperature, seed=0), batch_size=len(envs))
    was_training = model.training
    model.eval()
    try:
        played = rollout(envs, policy, fmt, list(seeds), env_id=env_id, max_context_tokens=max_context_tokens,
                         parse=lambda text: parse_turn(text, style="hermes", tools=fmt.tools))  # fmt: skip
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    solved = [t.seed for t in played if t.success]
    return {"success_rate": len(solved) / max(1, len(played)), "solved": len(solved), "episodes": len(played),
            "mean_turns": sum(len(t.turns) for t in played) / max(1, len(played)), "solved_tasks": solved}  # fmt: skip


def ensure_tool_template(tokenizer: Any) -> Any:
    """``tokenizer``, given TRL's ChatML tool-calling template (Qwen2.5's) when its own template cannot render tool
    calls; raises :class:`ConfigError` when it cannot (no template that TRL can use and no ChatML tokens)."""
    try:
        from trl.chat_template_utils import qwen2_5_chat_template, supports_tool_calling
    except ImportError as e:
        raise ImportError(f"ensure_tool_template needs TRL: {TRL_EXTRA}") from e
    if getattr(tokenizer, "chat_template", None) and supports_tool_calling(tokenizer):
        return tokenizer
    vocab = tokenizer.get_vocab()
    if "<|im_start|>" not in vocab or "<|im_end|>" not in vocab:
        raise ConfigError(
            "the tokenizer's chat template cannot render tool calls and it has no ChatML tokens "
            "(<|im_start|>, <|im_end|>) for TRL's fallback template; set a tool-calling chat_template yourself"
        )
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


# ---- tool methods -----------------------------------------------------------------------------------------
def _act_method(instructions: str) -> Any:
    def act(self, command: str) -> str:  # self unannotated: transformers skips it in the schema
        return self._step(command)

    first = next((line.strip() for line in instructions.splitlines() if line.strip()), "")
    context = f" The task: {first}" if first else ""
    act.__doc__ = (
        f"Play one turn: send one text command to the environment and get back what happens.{context}\n\n"
        "Args:\n"
        "    command: One command, as the instructions describe (e.g. a move or an action on an object).\n\n"
        "Returns:\n"
        "    What the environment shows after the command."
    )
    act.__qualname__ = f"{AgentEnvTool.__name__}.act"
    return act


def _tool_method(schema: dict[str, Any]) -> Any:
    """A method that plays ``ToolCall(name, arguments)``, with the signature and docstring TRL turns into the
    tool's schema (required parameters first, optional ones defaulting to ``None``)."""
    spec = schema.get("function", schema)
    name = spec.get("name")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise ConfigError(f"tool name {name!r} cannot be a TRL tool: it must be a public Python identifier")
    parameters = spec.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = [p for p in parameters.get("required") or [] if p in properties]
    ordered = required + [p for p in properties if p not in required]
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    doc_args = []
    for p in ordered:
        if not p.isidentifier() or keyword.iskeyword(p) or p == "self":
            raise ConfigError(f"tool {name!r}: parameter {p!r} cannot be a Python parameter name")
        annotation = _annotation(properties[p] if isinstance(properties[p], dict) else {})
        default = inspect.Parameter.empty if p in required else None
        params.append(
            inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
        )
        annotations[p] = annotation
        text = properties[p].get("description") if isinstance(properties[p], dict) else None
        description = " ".join(str(text or f"The {p}.").split())
        doc_args.append(f"    {p}: {description}")
    annotations["return"] = str
    signature = inspect.Signature(params, return_annotation=str)
    names = ordered

    def tool(self, *args: Any, **kwargs: Any) -> str:
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names)} arguments, got {len(args)}")
        arguments = dict(zip(names[: len(args)], args, strict=True))
        for key, value in kwargs.items():
            if key in arguments:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            arguments[key] = value
        return self._step(ToolCall(name, arguments))

    description = " ".join(str(spec.get("description") or f"Call the {name} tool.").split())
    doc = description + ("\n\nArgs:\n" + "\n".join(doc_args) if doc_args else "")
    tool.__doc__ = doc + "\n\nReturns:\n    What the environment shows after the call."
    tool.__name__ = name
    tool.__qualname__ = f"{AgentEnvTool.__name__}.{name}"
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__annotations__ = annotations
    return tool


def _annotation(schema: dict[str, Any]) -> Any:
    """The Python type hint whose JSON schema (as transformers derives it) matches ``schema`` closely."""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, float, bool)) for v in enum):
        return Literal[tuple(enum)]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    hints = []
    for kind in kinds:
        hint = _JSON_TYPES.get(kind)
        if hint is list and isinstance(schema.get("items"), dict):
            item = _annotation(schema["items"])
            hint = list if item is Any else list[item]
        if hint is not None:
            hints.append(hint)
    if not hints:
        return Any
    return reduce(or_, hints) if len(hints) > 1 else hints[0]


def _is_tool_name(name: str) -> bool:
    """Whether TRL exposes a class member of this name as a tool."""
    return not name.startswith("_") and name not in ("reset", "get_reward")


def _json_schema(function: Any) -> dict[str, Any]:
    try:
        from transformers.utils import get_json_schema
    except ImportError as e:
        raise ImportError(f"ToolCallChatFormat needs transformers (the 'trl' extra): {TRL_EXTRA}") from e
    return get_json_schema(function)


def _walkthrough_calls(step: Any, tools: list[str], env: AgentEnvTool) -> list[tuple[str, dict[str, Any]]]:
    """(tool name, arguments) for one walkthrough step: ``act(command)`` for a text-command env; the step's tool
    calls (a :class:`ToolCall`, or text in the env's tool-call syntax) for a tool-using one."""
    if tools == ["act"] and isinstance(step, str):
        return [("act", {"command": step})]
    if isinstance(step, str):
        from agentenv.policies.tools import parse_turn

        step = parse_turn(step, tools=list(env.env.unwrapped.tools))
    calls = step if isinstance(step, list) else [step]
    if not calls or not all(isinstance(c, ToolCall) and c.name in tools for c in calls):
        raise ConfigError(f"walkthrough step {step!r} is not a call of the tools {tools}")
    return [(c.name, dict(c.arguments)) for c in calls]


def _has_system_message(prompt: Any, instructions: str) -> bool:
    if not isinstance(prompt, list):
        return False
    return any(
        isinstance(m, dict) and m.get("role") == "system" and instructions in str(m.get("content") or "")
        for m in prompt
    )


__all__ = [
    "EPISODE_OVER",
    "FINAL_ANSWER",
    "SCORES",
    "TRL_EXTRA",
    "AgentEnvTool",
    "ToolCallChatFormat",
    "ToolLoop",
    "ensure_tool_template",
    "environment_factory",
    "evaluate_tool_loop",
    "trl_dataset",
    "walkthrough_chats",
]
