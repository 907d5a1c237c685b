"""Tool-using environments: :class:`ToolEnv` dispatches the agent's tool calls to ``tool_<name>`` methods.

A subclass declares ``tools`` (OpenAI function schemas) and implements one ``tool_<name>(**arguments)`` method per
tool, returning a :class:`ToolResult` (or a plain ``str``). The base class does the rest of the bookkeeping every
tool env needs and gets subtly wrong when each writes its own:

* a turn may be parsed calls (``ToolCall`` / list, what the rollout engine sends), or text holding ``<tool_call>``
  blocks or a bare JSON call (what scripted policies, SFT data and humans write) — both step the same;
* every call, text or parsed, is checked once after decoding (:func:`~agentenv.tool_calls.argument_problem`: NUL,
  control characters, lone surrogates, over-long or too deeply nested values); a turn that holds no call, an
  unknown tool, or arguments that fail that check or do not fit the schema is an *invalid turn* whose observation
  says what was wrong and shows a correct call; the episode goes on;
* a well-formed call whose tool fails (a file that does not exist, a bad regex) is a valid turn whose observation
  is the error: the agent learns from it, as it would from a shell;
* several calls in one turn run in order (at most ``max_calls_per_turn``), their outputs numbered; a call that
  ends the episode (e.g. ``submit``) stops the rest;
* long outputs are clipped by :func:`clip_output` (head and tail kept, the cut said), so one ``cat`` of a huge
  file cannot blow up the context; lone surrogates in outputs (undecodable file names) become U+FFFD, so an
  observation is always encodable. Other raw text, NUL and ANSI escapes included, reaches the agent as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentenv.core import _SURROGATE, Action, InvalidAction, TextEnv
from agentenv.errors import check_range
from agentenv.spaces import ToolCall
from agentenv.tool_calls import (
    argument_problem,
    invalid_call_feedback,
    json_schema_errors,
    parse_tool_calls,
    tool_schemas,
)


class ToolError(Exception):
    """Raised by a tool method for a well-formed call that failed; its message is what the agent reads."""


@dataclass
class ToolResult:
    """What one tool call gives back. ``reward_parts`` add up into the turn's reward."""

    output: str
    reward_parts: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    success: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


def function_tool(name: str, description: str, properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict:
    """An OpenAI function schema (``{"type": "function", "function": {...}}``) from its parts."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": dict(properties),
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


def clip_output(text: str, limit: int, *, what: str = "characters") -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and its tail (errors and summaries sit at
    the end of command output), with a line saying how much was left out."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = max(0, limit - head)
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} {what} omitted ...]\n{text[len(text) - tail :] if tail else ''}"


class ToolEnv(TextEnv):
    """Base class of envs whose actions are tool calls (see the module docstring)."""

    #: How many calls one turn may make; later calls in the same turn are rejected with a note.
    max_calls_per_turn: ClassVar[int] = 5

    def __init__(self, *, max_tool_output: int = 8000, **kwargs: Any):
        super().__init__(**kwargs)
        check_range("max_tool_output", max_tool_output, 200, integer=True)
        self.max_tool_output = max_tool_output
        self._schemas = tool_schemas(list(self.tools)) or {}

    # ---- turning a turn into calls --------------------------------------------------------------------
    def read_calls(self, action: Action) -> list[ToolCall] | InvalidAction:
        """The calls of a turn, checked against the tool schemas; an :class:`InvalidAction` saying why not."""
        if isinstance(action, ToolCall):
            calls: list[Any] = [action]
        elif isinstance(action, list):
            calls = list(action)
        else:
            calls = parse_tool_calls(action)
            if not calls:
                return self._invalid("the turn calls no tool")
        for call in calls:
            if isinstance(call, InvalidAction):
                return self._invalid(call.reason)
            problem = argument_problem(call)
            if problem:
                return self._invalid(problem)
            if call.name not in self._schemas:
                return self._invalid(f"there is no tool {call.name!r}")
            errors = json_schema_errors(call.arguments, self._schemas[call.name])
            if errors:
                return self._invalid(f"{call.name}: {'; '.join(errors)}")
        return calls

    def _invalid(self, problem: str) -> InvalidAction:
        return InvalidAction(invalid_call_feedback(problem, list(self.tools)))

    # ---- the step -------------------------------------------------------------------------------------
    def _step(self, action: Action) -> tuple[str, float, bool, dict[str, Any]]:
        calls = self.read_calls(action)
        if isinstance(calls, InvalidAction):
            observation, reward, terminated, info = self._step_invalid(calls.reason)
            return observation, reward, terminated, {**info, "invalid_action": True, "invalid_reason": calls.reason}
        outputs: list[tuple[ToolCall | None, str]] = []  # (the call, or None for a note; its output)
        parts: dict[str, float] = {}
        info: dict[str, Any] = {"tool_calls": [c.name for c in calls]}
        terminated = False
        for n, call in enumerate(calls):
            if n >= self.max_calls_per_turn:
                outputs.append((None, f"Not run: at most {self.max_calls_per_turn} tool calls per turn."))
                break
            result = self._run_tool(call)
            outputs.append((call, clip_output(_SURROGATE.sub("\ufffd", result.output), self.max_tool_output)))
            for key, value in result.reward_parts.items():
                parts[key] = parts.get(key, 0.0) + float(value)
            info.update(result.info)
            if result.success is not None:
                info["success"] = result.success
            if result.terminated:
                terminated = True
                if n + 1 < len(calls):
                    outputs.append((None, f"Not run: {len(calls) - n - 1} later call(s); the episode ended."))
                break
        if len(outputs) == 1:
            observation = outputs[0][1]
        else:
            observation = "\n\n".join(
                f"[{i + 1}] {_signature(c)}\n{out}" if c is not None else out for i, (c, out) in enumerate(outputs)
            )
        info["reward_parts"] = parts or {"task": 0.0}
        return observation, sum(parts.values()), terminated, info

    def _run_tool(self, call: ToolCall) -> ToolResult:
        method = getattr(self, f"tool_{call.name}", None)
        if method is None:  # a schema without a method is the env's bug, not the agent's
            raise NotImplementedError(f"{type(self).__name__} declares tool {call.name!r} but has no tool_{call.name}")
        try:
            result = method(**call.arguments)
        except ToolError as e:
            return ToolResult(f"Error: {e}")
        return result if isinstance(result, ToolResult) else ToolResult(str(result))


def _signature(call: ToolCall) -> str:
    arguments = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)[:60]}" for k, v in call.arguments.items())
    return f"{call.name}({arguments})"
