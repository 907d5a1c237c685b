"""Tool calling for runners: read a generated turn as tool calls, and a chat template that shows tools to the model.

An env declares its tools as OpenAI function schemas (``TextEnv.tools``); :class:`~agentenv.chat_format.ChatFormat`
puts them into the prompt through the chat template (:data:`QWEN25_TOOL_TEMPLATE` for models without a tool section
of their own); :func:`parse_turn` turns what the model wrote into the :class:`~agentenv.spaces.ToolCall` (s) the env
steps on, or an :class:`~agentenv.core.InvalidAction` whose reason tells the agent what was wrong and how to call a
tool; the env's answer goes back as :func:`format_tool_result`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from agentenv.core import InvalidAction
from agentenv.errors import ConfigError, check_choice, closest
from agentenv.spaces import ToolCall
from agentenv.tool_calls import (
    call_from_json,
    format_tool_result,
    invalid_call_feedback,
    json_schema_errors,
    loads_json,
    tool_call_blocks,
    tool_call_example,
    tool_schemas,
)

#: How :func:`parse_turn` reads calls: ``<tool_call>`` JSON blocks (Hermes / Qwen), ``name(key=value)`` or
#: ``name: {...}`` commands, or whichever the turn uses.
STYLES = ("auto", "hermes", "text")

_NAME = r"[A-Za-z_][\w.-]*"
_TEXT_CALL = re.compile(rf"({_NAME})\((.*)\)", re.DOTALL)
_TEXT_JSON_CALL = re.compile(rf"({_NAME})\s*:\s*(\{{.*\}})", re.DOTALL)
_BAREWORDS = {"true": True, "false": False, "null": None, "none": None}

# ChatML with the Qwen2.5 tool layout: tools as JSON lines inside <tools></tools> in the system turn, an assistant's
# calls as <tool_call> JSON blocks, tool results as <tool_response> blocks in a user turn (consecutive results share
# one). Without tools it renders plain ChatML. Written for this project; the markup is Qwen2.5's, the wording ours.
QWEN25_TOOL_TEMPLATE = r"""
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if has_system -%}{{- messages[0].content + '\n\n' -}}{%- endif -%}
    {{- '# Tools\n\nYou may call one or more of these functions. ' -}}
    {{- 'Their signatures are listed inside <tools></tools>:\n<tools>' -}}
    {%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
    {{- '\n</tools>\n\nTo call a function, write a JSON object with its name and arguments ' -}}
    {{- 'inside <tool_call></tool_call>, one block per call:\n' -}}
    {{- '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}
{%- elif has_system -%}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'system' and loop.first -%}
    {%- elif message.role == 'assistant' -%}
        {{- '<|im_start|>assistant\n' + (message.content or '') -}}
        {%- for call in message.tool_calls or [] -%}
            {%- set fn = call.function if call.function is defined else call -%}
            {%- if message.content or not loop.first -%}{{- '\n' -}}{%- endif -%}
            {%- set arguments = fn.arguments if fn.arguments is string else (fn.arguments | tojson) -%}
            {{- '<tool_call>\n{"name": ' + (fn.name | tojson) + ', "arguments": ' + arguments + '}\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\n' -}}
    {%- elif message.role == 'tool' -%}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' -}}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
    {%- else -%}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""


def tool_chat_format(tokenizer: Any, tools: Any, *, chat_template: str | None = None) -> Any:
    """A :class:`~agentenv.chat_format.ChatFormat` that shows ``tools`` to the model: the given or the tokenizer's
    template when it renders tools, else :data:`QWEN25_TOOL_TEMPLATE` for ChatML tokenizers; without tools, plain.

    Raises :class:`ConfigError` when no template can show the tools (pass a tool-calling ``chat_template``).
    """
    from agentenv.chat_format import ChatFormat

    tools = list(tools or [])
    if not tools:
        return ChatFormat(tokenizer, chat_template=chat_template)
    own = ChatFormat(tokenizer, chat_template=chat_template, tools=tools)
    names = list(tool_schemas(tools) or {})
    shown = own.render(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], add_generation_prompt=True
    )
    if names and all(name in shown for name in names):
        return own
    vocab = tokenizer.get_vocab()
    if chat_template is None and "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return ChatFormat(tokenizer, chat_template=QWEN25_TOOL_TEMPLATE, tools=tools)
    raise ConfigError(
        "the chat template does not show the env's tools to the model and the tokenizer has no ChatML tokens for "
        "the built-in tool template; pass a tool-calling chat_template"
    )


def parse_turn(text: str, *, style: str = "auto", tools: Any = None) -> str | ToolCall | list[ToolCall] | InvalidAction:
    """What an env should step on for a generated turn: the tool call(s) it makes, or the text itself.

    * Without ``tools`` the text comes back unchanged: text envs parse their own commands.
    * ``"hermes"``: every ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block is a call (arguments
      may be a JSON string; text around the blocks is ignored). One call gives a ``ToolCall``, several a list.
    * ``"text"``: the turn, or its last non-empty line, is one ``name(key=value, ...)`` (positional values follow
      the schema's property order; bare words are strings) or, for a known tool, ``name: {json arguments}``.
    * ``"auto"``: ``"hermes"`` if the turn has a ``<tool_call>`` block, else ``"text"``.

    A turn with no call is returned as text (a final answer, say: the env decides). A call that cannot be read
    or does not fit the schemas (unknown tool, missing required argument, wrong JSON type, a block cut off
    before ``</tool_call>``) makes the whole turn an :class:`InvalidAction` whose reason says what was wrong and
    shows a correct call. Never raises on the agent's text; bad ``style`` or ``tools`` raise ``ConfigError``.
    """
    check_choice("style", style, STYLES)
    if not tools:
        return text
    schemas = tool_schemas(tools)
    if not schemas:
        raise ConfigError(
            "tools must be OpenAI function schemas, e.g. "
            '[{"type": "function", "function": {"name": "add", "parameters": {...}}}]'
        )
    blocks = tool_call_blocks(text) if style != "text" else []
    if blocks:
        return _hermes_calls(blocks, tools, schemas)
    if style != "hermes":
        found = _text_call(text, schemas)
        if found is not None:
            if isinstance(found, InvalidAction):
                return InvalidAction(invalid_call_feedback(found.reason, tools, style="text"))
            problem = _call_problem(found, schemas)
            return InvalidAction(invalid_call_feedback(problem, tools, style="text")) if problem else found
    return text


def _hermes_calls(
    blocks: list[tuple[str, bool]], tools: Any, schemas: Mapping[str, Any]
) -> ToolCall | list[ToolCall] | InvalidAction:
    calls = []
    for i, (body, closed) in enumerate(blocks):
        which = f"tool call {i + 1} of {len(blocks)}: " if len(blocks) > 1 else ""
        if not closed:
            problem = "the <tool_call> block has no closing </tool_call>: the turn ended inside it (too long?)"
            return InvalidAction(invalid_call_feedback(which + problem, tools))
        raw = loads_json(body)
        if isinstance(raw, InvalidAction):
            return InvalidAction(invalid_call_feedback(f"{which}the <tool_call> block is {raw.reason}", tools))
        call = call_from_json(raw)
        problem = call.reason if isinstance(call, InvalidAction) else _call_problem(call, schemas)
        if problem:
            return InvalidAction(invalid_call_feedback(which + problem, tools))
        calls.append(call)
    return calls[0] if len(calls) == 1 else calls


def _call_problem(call: ToolCall, schemas: Mapping[str, Any]) -> str:
    """Why ``call`` does not fit the tools (``""`` when it does)."""
    if call.name not in schemas:
        hint = closest(call.name, schemas, n=1)
        return f"unknown tool {call.name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    return "; ".join(json_schema_errors(call.arguments, schemas[call.name], path=call.name))


def _text_call(text: str, schemas: Mapping[str, Any]) -> ToolCall | InvalidAction | None:
    """The one ``name(...)`` / ``name: {...}`` call of a text-style turn; ``None`` when it makes none."""
    lines = [_unquote(line) for line in text.splitlines() if _unquote(line)]
    first_error = None
    for candidate in dict.fromkeys([_unquote(text), *lines[-1:]]):
        if (m := _TEXT_JSON_CALL.fullmatch(candidate)) and m.group(1) in schemas:  # "Note: {...}" is prose
            arguments = loads_json(m.group(2))
            if not isinstance(arguments, InvalidAction):
                return ToolCall(m.group(1), arguments)
            found: ToolCall | InvalidAction = InvalidAction(f"the arguments of {m.group(1)} are {arguments.reason}")
        elif m := _TEXT_CALL.fullmatch(candidate):
            found = _keyword_call(m.group(1), m.group(2), schemas)
            if isinstance(found, ToolCall):
                return found
        else:
            continue
        first_error = first_error or found  # the whole turn may be prose that happens to end in ")"
    return first_error


def _unquote(text: str) -> str:
    return text.strip().strip("`").strip()


def _keyword_call(name: str, inside: str, schemas: Mapping[str, Any]) -> ToolCall | InvalidAction:
    try:
        node = ast.parse(f"f({inside})", mode="eval").body
        if not isinstance(node, ast.Call):
            raise ValueError("not a call")
        if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
            raise ValueError("no *args or **kwargs")
        arguments = {k.arg: _literal(k.value) for k in node.keywords}
        positional = [_literal(a) for a in node.args]
    except (SyntaxError, ValueError, RecursionError) as e:
        return InvalidAction(f"the arguments of {name}(...) cannot be read ({e}); write key=value pairs")
    if positional:
        properties = schemas.get(name, {}).get("properties")
        order = list(properties) if isinstance(properties, Mapping) else []
        if len(positional) > len(order):
            return InvalidAction(f"{name} takes at most {len(order)} positional values; write key=value pairs")
        arguments = {**dict(zip(order, positional, strict=False)), **arguments}
    return ToolCall(name, arguments)


def _literal(node: ast.expr) -> Any:
    """A JSON value from a Python-ish literal: JSON's true/false/null are welcome, a bare word is a string."""
    if isinstance(node, ast.Name):
        return _BAREWORDS.get(node.id.lower(), node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("no ** inside a value")
        return {str(_literal(k)): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    value = ast.literal_eval(node)
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        raise ValueError(f"{type(value).__name__} is not a JSON value")
    return value


__all__ = [
    "QWEN25_TOOL_TEMPLATE",
    "STYLES",
    "format_tool_result",
    "invalid_call_feedback",
    "parse_turn",
    "tool_call_example",
    "tool_chat_format",
]
