"""Tool calls in text: ``<tool_call>`` blocks, arguments checked against JSON schemas, tool-result messages and the
feedback an agent gets for a call that could not be read.

Rewards score tool calls (:class:`agentenv.rewards.rules.ToolCallValidity`), runners turn a generated turn into calls
(:func:`agentenv.policies.tools.parse_turn`), the rollout sends tool results back and tool-using envs explain bad
calls; all of them may import the core, so the shared pieces live here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentenv.core import _CONTROL, _SURROGATE, InvalidAction, tool_call_from_dict
from agentenv.spaces import ToolCall

#: What the arguments of one tool call may hold, checked after decoding (:func:`argument_problem`): strings of at
#: most ``MAX_ARGUMENT_CHARS`` characters each and ``MAX_ARGUMENT_TOTAL_CHARS`` in all (keys included), at most
#: ``MAX_ARGUMENT_VALUES`` values, nested at most ``MAX_ARGUMENT_DEPTH`` deep.
MAX_ARGUMENT_CHARS = 1_000_000
MAX_ARGUMENT_TOTAL_CHARS = 4_000_000
MAX_ARGUMENT_VALUES = 100_000
MAX_ARGUMENT_DEPTH = 32
_ALLOWED_TEXT = (
    "any text but NUL, other control characters (tab, newline and carriage return are fine) and lone surrogates"
)

# A block runs to its close tag or, cut off by a token limit, to the end of the text (group 2 is then empty).
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(</tool_call>|\Z)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
# Placeholder argument values for an example call, by JSON type.
_EXAMPLE_VALUES = {"string": "...", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}, "null": None}


def json_type(value: Any) -> str:
    """The JSON type name of a Python value (``"integer"`` before ``"number"``; the Python name if none fits)."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


def json_schema_errors(value: Any, schema: Any, path: str = "arguments") -> list[str]:
    """What is wrong with ``value`` under a small JSON-schema subset; ``[]`` when it conforms.

    Checks ``type`` (one or a list of string/number/integer/boolean/array/object/null), ``enum``, and
    recursively ``properties``, ``required``, ``additionalProperties: false`` and ``items``. Other keywords are
    ignored, so a richer schema is checked leniently, never wrongly rejected.
    """
    if not isinstance(schema, Mapping):
        return []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        known = [t for t in types if t in _JSON_TYPES]
        if known and not any(_JSON_TYPES[t](value) for t in known):
            return [f"{path}: expected {' or '.join(known)}, got {json_type(value)}"]
    errors = []
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        errors.append(f"{path}: {value!r} is not one of {enum}")
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        errors += [f"{path}: missing required {name!r}" for name in required if name not in value]
        for key, item in value.items():
            if key in properties:
                errors += json_schema_errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected {key!r}")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors += json_schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def tool_schemas(tools: Any) -> dict[str, Mapping[str, Any]] | None:
    """Parameter schemas by tool name from OpenAI function schemas (``{"type": "function", "function": {...}}``
    or bare ``{"name", "parameters"}``; a list, or a dict by name); ``None`` when ``tools`` is not that."""
    if isinstance(tools, Mapping) and not ({"name", "function"} & set(tools)):
        tools = [{"name": name, **spec} if isinstance(spec, Mapping) else spec for name, spec in tools.items()]
    if isinstance(tools, Mapping):
        tools = [tools]
    if not isinstance(tools, (list, tuple)):
        return None
    schemas: dict[str, Mapping[str, Any]] = {}
    for tool in tools:
        spec = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            return None
        parameters = spec.get("parameters")
        schemas[spec["name"]] = parameters if isinstance(parameters, Mapping) else {"type": "object"}
    return schemas


def tool_call_blocks(text: str) -> list[tuple[str, bool]]:
    """The ``<tool_call>...</tool_call>`` blocks of a turn, in order, as ``(body, closed)``.

    Only the last block can be unclosed: the turn ended (e.g. at ``max_new_tokens``) before its close tag.
    """
    return [(m.group(1), bool(m.group(2))) for m in _TOOL_CALL_BLOCK.finditer(text)]


def call_from_json(raw: Any) -> ToolCall | InvalidAction:
    """A tool call from decoded JSON: ``{"name", "arguments"}`` (arguments possibly a JSON string), an OpenAI
    ``{"function": {...}}`` or Llama 3's ``{"name", "parameters"}``."""
    if isinstance(raw, ToolCall):
        return raw
    if not isinstance(raw, dict):
        return InvalidAction(f"a tool call must be a JSON object, got {json_type(raw)}")
    body = raw.get("function", raw)
    if not isinstance(body, dict):
        return tool_call_from_dict(raw)
    if "arguments" not in body and "parameters" in body:
        body = {**body, "arguments": body["parameters"]}
    if isinstance(body.get("arguments"), str) and body["arguments"].strip():
        arguments = loads_json(body["arguments"])
        if isinstance(arguments, InvalidAction):
            return InvalidAction(f"tool call {body.get('name')!r}: arguments are {arguments.reason}")
        body = {**body, "arguments": arguments}
    return tool_call_from_dict(body)


def argument_problem(call: ToolCall) -> str | None:
    """Why a decoded call cannot be run, or ``None``: a name that is not a clean string, or arguments that are not a
    JSON object of clean, bounded values (the caps above; NaN and infinities are not JSON).

    Every call, read from text or passed parsed, goes through this after decoding: a JSON escape such as
    ``\\u0000`` or ``\\ud800`` only becomes a NUL or a surrogate then. Iterative, so no nesting raises
    ``RecursionError``.
    """
    name = call.name
    if not isinstance(name, str) or not name or _CONTROL.search(name) or _SURROGATE.search(name):
        return "a tool call needs a name: a non-empty string without control characters"
    if not isinstance(call.arguments, dict):
        return f"{name}: arguments must be a JSON object, got {json_type(call.arguments)}"
    pending: list[tuple[str, Any, int]] = [("arguments", call.arguments, 0)]
    values = total = 0
    while pending:
        path, value, depth = pending.pop()
        values += 1
        if values > MAX_ARGUMENT_VALUES:
            return f"{name}: arguments hold more than {MAX_ARGUMENT_VALUES:,} values"
        if isinstance(value, str):
            total += len(value)
            problem = _text_problem(value)
            if problem:
                return f"{name}: {path} {problem}"
        elif isinstance(value, (dict, list, tuple)):
            if depth >= MAX_ARGUMENT_DEPTH:
                return f"{name}: {path} is nested deeper than {MAX_ARGUMENT_DEPTH} levels"
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{name}: {path} has a key that is not a string ({json_type(key)})"
                    total += len(key)
                    problem = _text_problem(key)
                    if problem:
                        return f"{name}: a key of {path} {problem}"
                    pending.append((f"{path}.{key[:40]}", item, depth + 1))
            else:
                pending.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{name}: {path} is {value}, which is not a JSON number"
        elif not (value is None or isinstance(value, (bool, int, float))):
            return f"{name}: {path} is a {type(value).__name__}, not a JSON value"
        if total > MAX_ARGUMENT_TOTAL_CHARS:
            return f"{name}: arguments hold more than {MAX_ARGUMENT_TOTAL_CHARS:,} characters in all"
    return None


def _text_problem(text: str) -> str | None:
    if len(text) > MAX_ARGUMENT_CHARS:
        return f"has {len(text):,} characters; the limit is {MAX_ARGUMENT_CHARS:,} per value"
    if _SURROGATE.search(text):
        return f"holds a lone surrogate (not valid Unicode); allowed: {_ALLOWED_TEXT}"
    found = _CONTROL.search(text)
    if found:
        return f"holds the control character {found.group()!r}; allowed: {_ALLOWED_TEXT}"
    return None


def loads_json(text: str) -> Any | InvalidAction:
    """Decoded JSON, also inside a Markdown code fence; an :class:`InvalidAction` saying why not."""
    text = text.strip()
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as e:
        return InvalidAction(f"not valid JSON ({e.msg})")
    except ValueError as e:  # e.g. an integer longer than Python's int_max_str_digits
        return InvalidAction(f"not valid JSON ({e})")
    except RecursionError:
        return InvalidAction("not valid JSON (nested too deeply)")


def parse_tool_calls(response: str, metadata: Mapping[str, Any] | None = None) -> list[ToolCall | InvalidAction]:
    """The tool calls of a turn, read leniently for scoring: ``metadata["tool_calls"]``, else ``<tool_call>``
    blocks (a missing close tag forgiven), else the whole response as a JSON call (or list of calls, or an OpenAI
    message with ``tool_calls``).

    Unparsable calls come back as :class:`~agentenv.core.InvalidAction` with the reason; no call at all is ``[]``.
    """
    raw: Any = (metadata or {}).get("tool_calls")
    if raw is None:
        blocks = tool_call_blocks(response)
        if blocks:
            raw = [loads_json(body) for body, _ in blocks]
        elif response.strip()[:1] in ("{", "[", "`"):
            raw = loads_json(response)
            if isinstance(raw, dict) and isinstance(raw.get("tool_calls"), list):
                raw = raw["tool_calls"]
        else:
            return []
    if isinstance(raw, InvalidAction):
        return [raw]
    calls = raw if isinstance(raw, list) else [raw]
    return [c if isinstance(c, InvalidAction) else call_from_json(c) for c in calls]


def format_tool_result(result: str, call: ToolCall | Sequence[ToolCall]) -> dict[str, str]:
    """The chat message that carries an env's answer to a tool call (or to several calls made in one turn)."""
    calls = [call] if isinstance(call, ToolCall) else list(call)
    return {"role": "tool", "content": result, "name": ", ".join(c.name for c in calls)}


def tool_call_text(name: str, arguments: Mapping[str, Any] | None = None) -> str:
    """A call written as an agent writes it: one ``<tool_call>`` JSON block (what a tool env reads from a turn)."""
    call = {"name": name, "arguments": dict(arguments or {})}
    return f"<tool_call>{json.dumps(call, ensure_ascii=False)}</tool_call>"


def tool_call_example(tools: Any, *, style: str = "hermes") -> str:
    """A call of the first tool with placeholder values for its required arguments, written as the agent should
    write it: a ``<tool_call>`` block (``style="hermes"``) or ``name(key=value)`` (``style="text"``)."""
    schemas = tool_schemas(tools) or {"tool_name": {}}
    name, schema = next(iter(schemas.items()))
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    arguments = {key: _example_value(properties.get(key)) for key in required}
    if style == "text":
        return f"{name}({', '.join(f'{k}={json.dumps(v, ensure_ascii=False)}' for k, v in arguments.items())})"
    return tool_call_text(name, arguments)


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return "..."
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return _EXAMPLE_VALUES.get(kind, "...") if isinstance(kind, str) else "..."


def invalid_call_feedback(problem: str, tools: Any, *, style: str = "hermes") -> str:
    """What the agent reads after a bad call: what was wrong, how to call a tool (an example built from the first
    tool's schema) and the tools there are."""
    names = ", ".join(tool_schemas(tools) or {})
    how = "one <tool_call> block per call" if style != "text" else "one call per turn"
    return f"{problem.rstrip('. ')}. Call a tool as {tool_call_example(tools, style=style)} ({how}); tools: {names}"


__all__ = [
    "MAX_ARGUMENT_CHARS",
    "MAX_ARGUMENT_DEPTH",
    "MAX_ARGUMENT_TOTAL_CHARS",
    "MAX_ARGUMENT_VALUES",
    "argument_problem",
    "call_from_json",
    "format_tool_result",
    "invalid_call_feedback",
    "json_schema_errors",
    "json_type",
    "loads_json",
    "parse_tool_calls",
    "tool_call_blocks",
    "tool_call_example",
    "tool_call_text",
    "tool_schemas",
]
