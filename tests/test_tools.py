"""Tool calling: turns read as tool calls, feedback for bad calls, tools in the chat template, tool episodes."""

import json
import random

import pytest

from agentenv import TextEnv
from agentenv.chat_format import ChatFormat
from agentenv.core import InvalidAction
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies.tools import (
    QWEN25_TOOL_TEMPLATE,
    STYLES,
    format_tool_result,
    invalid_call_feedback,
    parse_turn,
    tool_call_example,
)
from agentenv.rollout import rollout
from agentenv.spaces import ToolCall
from tests.test_rollout_tokens import ScriptedTokens


def function(name, description, properties, required):
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


ADD = function("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}, ["a", "b"])
ANSWER = function("answer", "Give the final answer.", {"value": {"type": "number"}}, ["value"])
TOOLS = (ADD, ANSWER)


def block(name, **arguments):
    """A call written the way the template renders one (and a Qwen2.5 model writes it)."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def invalid(text, **kwargs):
    result = parse_turn(text, tools=TOOLS, **kwargs)
    assert isinstance(result, InvalidAction), result
    return result.reason


# ---- reading a turn ---------------------------------------------------------------------------------------


def test_without_tools_the_turn_comes_back_unchanged():
    text = "open the door " + block("add", a=1, b=2)
    for style in STYLES:
        assert parse_turn(text, style=style, tools=None) == text
        assert parse_turn(text, style=style, tools=[]) == text


def test_a_tool_call_block_amid_prose_is_a_tool_call():
    text = f"I will add them first.\n{block('add', a=2, b=3)}\nThen I answer."
    assert parse_turn(text, tools=TOOLS) == ToolCall("add", {"a": 2, "b": 3})


def test_arguments_may_be_a_json_string_fenced_or_openai_shaped():
    as_string = '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'
    fenced = '<tool_call>\n```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```\n</tool_call>'
    openai = '<tool_call>{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}</tool_call>'
    for text in (as_string, fenced, openai):
        assert parse_turn(text, tools=TOOLS) == ToolCall("add", {"a": 1, "b": 2}), text


def test_several_blocks_are_a_list_of_calls_in_order():
    text = block("add", a=1, b=2) + "\n" + block("answer", value=3)
    assert parse_turn(text, tools=TOOLS) == [ToolCall("add", {"a": 1, "b": 2}), ToolCall("answer", {"value": 3})]


def test_malformed_json_is_invalid_and_shows_the_expected_format():
    reason = invalid('<tool_call>{"name": "add", "arguments": {"a": 1,}}</tool_call>')
    assert "not valid JSON" in reason
    assert '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1}}</tool_call>' in reason


def test_an_unknown_tool_is_invalid_and_the_known_tools_are_listed():
    reason = invalid(block("ad", a=1, b=2))
    assert "unknown tool 'ad'" in reason and "did you mean 'add'?" in reason and reason.endswith("tools: add, answer")


def test_a_missing_required_argument_is_invalid():
    assert "add: missing required 'b'" in invalid(block("add", a=1))


def test_a_wrong_argument_type_is_invalid():
    assert "add.b: expected number, got string" in invalid(block("add", a=1, b="two"))
    assert "answer.value: expected number, got boolean" in invalid(block("answer", value=True))


def test_a_block_cut_off_before_its_close_tag_is_invalid_even_if_its_json_is_whole():
    cut = block("add", a=1, b=2).removesuffix("\n</tool_call>")
    assert "no closing </tool_call>" in invalid(cut)
    assert "no closing </tool_call>" in invalid(block("add", a=1, b=2) + '\n<tool_call>\n{"name": "ans')


def test_one_bad_call_makes_the_whole_turn_invalid_and_says_which():
    reason = invalid(block("add", a=1, b=2) + block("answer"))
    assert reason.startswith("tool call 2 of 2: answer: missing required 'value'")


def test_text_style_reads_keyword_positional_and_json_forms():
    for text in ("add(a=2, b=3)", "add(2, 3)", "add(2, b=3)", 'add: {"a": 2, "b": 3}', "`add(a=2, b=3)`"):
        for style in ("auto", "text"):
            assert parse_turn(text, style=style, tools=TOOLS) == ToolCall("add", {"a": 2, "b": 3}), (text, style)


def test_text_style_values_are_json_values_and_bare_words_are_strings():
    tools = [function("go", "Move.", {"direction": {"type": "string"}, "run": {"type": "boolean"}}, ["direction"])]
    assert parse_turn("go(direction=north, run=true)", tools=tools) == ToolCall(
        "go", {"direction": "north", "run": True}
    )
    assert parse_turn("go('south west')", tools=tools) == ToolCall("go", {"direction": "south west"})


def test_text_style_takes_the_call_on_the_last_line_after_prose():
    text = "The terms are 2 and 3.\nI should add them:\n\nadd(a=2, b=3)\n"
    assert parse_turn(text, style="text", tools=TOOLS) == ToolCall("add", {"a": 2, "b": 3})


def test_text_style_tries_the_last_line_when_the_whole_turn_is_no_call():
    text = "add(two numbers) is what I need.\nadd(a=2, b=3)"
    assert parse_turn(text, tools=TOOLS) == ToolCall("add", {"a": 2, "b": 3})


def test_hostile_turns_are_invalid_not_exceptions():
    for text in ("<tool_call>" + "[" * 100_000 + "</tool_call>", "add(" + "[" * 300 + ")", "add(a={1, 2}, b=1)",
                 "add(**{'a': 1})", "answer: {" + '"v": [' * 5000 + "}"):  # fmt: skip
        assert isinstance(parse_turn(text, tools=TOOLS), InvalidAction), text[:30]


def test_text_style_errors_show_a_text_style_example():
    reason = invalid("sub(a=1, b=2)", style="text")
    assert "unknown tool 'sub'" in reason and "add(a=1, b=1)" in reason and "<tool_call>" not in reason
    assert "cannot be read" in invalid("add(a=1, b=)")
    assert "at most 2 positional values" in invalid("add(1, 2, 3)")
    assert "add.a: expected number, got string" in invalid("add(a=x, b=1)")


def test_a_turn_without_a_call_is_text_for_the_env_to_judge():
    for text in ("The answer is 5.", "Note: {see above}", "I would call add (twice)."):
        assert parse_turn(text, tools=TOOLS) == text
    assert parse_turn("add(a=1, b=2)", style="hermes", tools=TOOLS) == "add(a=1, b=2)"
    assert parse_turn(block("add", a=1, b=2), style="text", tools=TOOLS) == block("add", a=1, b=2)


def test_bad_style_or_tools_fail_fast():
    with pytest.raises(ConfigError, match="style='json'"):
        parse_turn("x", style="json", tools=TOOLS)
    with pytest.raises(ConfigError, match="OpenAI function schemas"):
        parse_turn("x", tools=["add"])


def test_the_feedback_example_is_itself_a_valid_call():
    tools = [function("move", "Move.", {"to": {"type": "string", "enum": ["north", "south"]}, "n": {"type": "integer"}},
                      ["to", "n"]), ADD]  # fmt: skip
    for style in ("hermes", "text"):
        example = tool_call_example(tools, style=style)
        assert parse_turn(example, style=style, tools=tools) == ToolCall("move", {"to": "north", "n": 1}), example
    feedback = invalid_call_feedback("the turn has no tool call.", tools)
    assert (
        feedback.startswith("the turn has no tool call. Call a tool as <tool_call>") and "tools: move, add" in feedback
    )


def test_a_tool_result_is_a_tool_message():
    assert format_tool_result("5", ToolCall("add", {"a": 2, "b": 3})) == {"role": "tool", "content": "5", "name": "add"}
    calls = [ToolCall("add", {"a": 1, "b": 2}), ToolCall("answer", {"value": 3})]
    assert format_tool_result("3\ncorrect", calls)["name"] == "add, answer"


# ---- a tool-using env -------------------------------------------------------------------------------------


class Calculator(TextEnv):
    """Sum three numbers with the ``add`` tool, then ``answer``: an env whose turns are tool calls."""

    tools = TOOLS
    instructions = "Add the numbers with the add tool, then call answer with the sum."

    def _reset(self, task_seed, options):
        rng = random.Random(task_seed)
        self.terms = [rng.randint(1, 9) for _ in range(3)]
        return f"What is {' + '.join(map(str, self.terms))}?", {"optimal_steps": 3}

    def _step(self, action):
        if isinstance(action, str):
            return invalid_call_feedback("the turn has no tool call", self.tools), 0.0, False, {"invalid_action": True}
        results, reward, terminated, success = [], 0.0, False, False
        for call in [action] if isinstance(action, ToolCall) else action:
            if call.name == "add":
                results.append(f"{call.arguments['a'] + call.arguments['b']:g}")  # parse_turn checked the schema
            else:
                success = call.arguments["value"] == sum(self.terms)
                reward, terminated = float(success), True
                results.append("correct" if success else "wrong")
        return "\n".join(results), reward, terminated, {"success": success}


def test_an_env_steps_on_parsed_calls_and_bad_calls_are_invalid_turns_with_feedback():
    env = Calculator(max_turns=5)
    env.reset(seed=0)
    a, b, c = env.terms
    observation, *_ = env.step(parse_turn(block("add", a=a, b=b), tools=env.tools))
    assert observation == f"{a + b}"
    observation, reward, terminated, _, info = env.step(parse_turn(block("mul", a=a, b=b), tools=env.tools))
    assert info["invalid_action"] and not terminated and reward == 0.0
    assert observation.startswith("Invalid action: unknown tool 'mul'") and "tools: add, answer" in observation
    _, reward, terminated, _, info = env.step(parse_turn(block("answer", value=a + b + c), tools=env.tools))
    assert terminated and info["success"] and reward == 1.0


# ---- the chat template ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def tool_format(tiny):
    return ChatFormat(tiny[1], chat_template=QWEN25_TOOL_TEMPLATE, tools=list(TOOLS))


OPENING = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "What is 2 + 3 + 4?"}]


def test_the_opening_prompt_lists_the_tool_schemas(tiny, tool_format):
    text = tiny[1].decode(tool_format.start(OPENING))
    assert text.startswith("<|im_start|>system\nBe exact.\n\n# Tools")
    tools_section = text[text.index("<tools>\n") + len("<tools>\n") : text.index("\n</tools>")]
    assert [json.loads(line) for line in tools_section.splitlines()] == list(TOOLS)
    assert text.endswith("<|im_start|>user\nWhat is 2 + 3 + 4?<|im_end|>\n<|im_start|>assistant\n")


def test_without_tools_the_template_is_plain_chatml(tiny):
    _, tokenizer = tiny
    chat = [*OPENING, {"role": "assistant", "content": "9"}, {"role": "user", "content": "Right."}]
    plain, ours = ChatFormat(tokenizer), ChatFormat(tokenizer, chat_template=QWEN25_TOOL_TEMPLATE)
    assert ours.render(chat, add_generation_prompt=True) == plain.render(chat, add_generation_prompt=True)


def test_an_assistant_tool_call_renders_as_the_block_parse_turn_reads(tool_format):
    structured = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}},
        {"type": "function", "function": {"name": "answer", "arguments": '{"value": 5}'}},
    ]}  # fmt: skip
    text = block("add", a=2, b=3) + "\n" + block("answer", value=5)
    as_text = {"role": "assistant", "content": text}
    render = tool_format.render
    assert render([*OPENING, structured], add_generation_prompt=False) == render(
        [*OPENING, as_text], add_generation_prompt=False
    )
    assert parse_turn(text, tools=TOOLS) == [ToolCall("add", {"a": 2, "b": 3}), ToolCall("answer", {"value": 5})]


def test_tool_results_are_tool_responses_in_a_user_turn(tool_format):
    chat = [*OPENING, {"role": "assistant", "content": block("add", a=2, b=3) + "\n" + block("add", a=5, b=4)}]
    chat += [format_tool_result("5", ToolCall("add")), format_tool_result("9", ToolCall("add"))]
    text = tool_format.render(chat, add_generation_prompt=True)
    assert text.endswith(
        "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\n9\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_start_and_tool_deltas_equal_encoding_the_whole_conversation(tiny, tool_format):
    _, tokenizer = tiny
    turns = [
        ("Adding first.\n" + block("add", a=2, b=3), format_tool_result("5", ToolCall("add"))),
        (block("mul", a=5, b=4), {"role": "user", "content": invalid(block("mul", a=5, b=4))}),
        (block("add", a=5, b=4), format_tool_result("9", ToolCall("add"))),
    ]
    chat, ids = list(OPENING), tool_format.start(OPENING)
    for text, reply in turns:
        ids += [*tool_format.encode(text), tokenizer.eos_token_id, *tool_format.delta(reply)]
        chat += [{"role": "assistant", "content": text}, reply]
    assert ids == tool_format.encode(tool_format.render(chat, add_generation_prompt=True))


# ---- a tool episode through the rollout ---------------------------------------------------------------------


def test_a_tool_episode_through_the_rollout_answers_calls_with_tool_messages(tiny, tool_format):
    # Needs rollout(..., parse=...): parse each generated turn before env.step; a call's result goes back as a
    # format_tool_result message, anything else as a user message.
    _, tokenizer = tiny
    probe = Calculator()
    probe.reset(seed=3)
    a, b, c = probe.terms
    texts = [
        f"First {a} + {b}.\n" + block("add", a=a, b=b),
        block("mul", a=a, b=b),
        block("add", a=a + b, b=c) + "\n" + block("answer", value=a + b + c),
    ]
    [trajectory] = rollout(
        [Calculator(max_turns=5)], ScriptedTokens(tokenizer, texts), tool_format, [3],
        parse=lambda text: parse_turn(text, tools=TOOLS),
    )  # fmt: skip
    assert not trajectory.error and trajectory.success and trajectory.terminated
    assert [t.invalid_action for t in trajectory.turns] == [False, True, False]
    assert "unknown tool 'mul'" in trajectory.turns[1].observation
    chat = [
        {"role": "system", "content": Calculator.instructions},
        {"role": "user", "content": f"What is {a} + {b} + {c}?"},
    ]
    chat += [{"role": "assistant", "content": texts[0]}, format_tool_result(f"{a + b}", ToolCall("add"))]
    chat += [{"role": "assistant", "content": texts[1]}, {"role": "user", "content": trajectory.turns[1].observation}]
    chat += [{"role": "assistant", "content": texts[2]}]
    rendered = tool_format.encode(tool_format.render(chat, add_generation_prompt=False))
    assert trajectory.token_ids == rendered[: len(trajectory.token_ids)]
    assert len(rendered) - len(trajectory.token_ids) == len(tool_format.encode("\n"))  # the template's final newline
    assert f"<tool_response>\n{a + b}\n</tool_response>" in tokenizer.decode(trajectory.token_ids)
