"""ToolEnv: how turns become tool calls, what a bad call gives back, and how results add up."""

from __future__ import annotations

from typing import Any

from agentenv.spaces import ToolCall
from agentenv.testing import BAD_ACTIONS
from agentenv.tool_env import ToolEnv, ToolError, ToolResult, clip_output, function_tool


class Counter(ToolEnv):
    """Reach the target number with add(n); submit ends the episode."""

    tools = (
        function_tool("add", "Add n to the counter.", {"n": {"type": "integer"}}, ("n",)),
        function_tool("shout", "Print text many times.", {"text": {"type": "string"}, "times": {"type": "integer"}}),
        function_tool("submit", "End the episode.", {}),
    )

    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.value, self.target = 0, 3 + task_seed % 5
        return f"Reach {self.target}.", {}

    def tool_add(self, n: int) -> ToolResult:
        if n < 0:
            raise ToolError("n must not be negative")
        self.value += int(n)
        return ToolResult(f"counter = {self.value}", reward_parts={"progress": 0.1})

    def tool_shout(self, text: str = "hi", times: int = 1) -> str:
        return text * int(times)

    def tool_submit(self) -> ToolResult:
        won = self.value == self.target
        return ToolResult("submitted", reward_parts={"task": float(won)}, terminated=True, success=won)


def test_parsed_calls_and_text_calls_step_the_same():
    a, b = Counter(), Counter()
    a.reset(seed=1)
    b.reset(seed=1)
    parsed = a.step(ToolCall("add", {"n": 2}))
    text = b.step('I will add.\n<tool_call>{"name": "add", "arguments": {"n": 2}}</tool_call>')
    assert parsed[0] == text[0] == "counter = 2"
    assert parsed[1] == text[1] == 0.1
    assert parsed[4]["reward_parts"] == text[4]["reward_parts"] == {"progress": 0.1}
    assert not parsed[4]["invalid_action"] and not text[4]["invalid_action"]


def test_bad_calls_are_invalid_turns_that_show_a_correct_call():
    env = Counter(max_turns=10)
    env.reset(seed=0)
    cases = {
        "no call": "just chatting",
        "unknown tool": ToolCall("multiply", {"n": 2}),
        "wrong type": ToolCall("add", {"n": "two"}),
        "missing argument": ToolCall("add", {}),
        "unexpected argument": ToolCall("add", {"n": 1, "m": 2}),
        "broken json": '<tool_call>{"name": "add", "arguments": {"n": </tool_call>',
    }
    for name, action in cases.items():
        observation, _, terminated, _, info = env.step(action)
        assert info["invalid_action"], name
        assert "<tool_call>" in observation and "add" in observation, name
        assert not terminated, name
    assert env.value == 0


def test_a_failing_tool_is_a_valid_turn_whose_output_is_the_error():
    env = Counter()
    env.reset(seed=0)
    observation, _, _, _, info = env.step(ToolCall("add", {"n": -1}))
    assert observation == "Error: n must not be negative"
    assert not info["invalid_action"]


def test_several_calls_run_in_order_and_submit_stops_the_rest():
    env = Counter()
    env.reset(seed=0)  # target 3
    calls = [ToolCall("add", {"n": 1}), ToolCall("add", {"n": 2}), ToolCall("submit"), ToolCall("add", {"n": 9})]
    observation, reward, terminated, _, info = env.step(calls)
    assert terminated and info["success"]
    assert env.value == 3
    assert observation.startswith("[1] add(n=1)\ncounter = 1\n\n[2] add(n=2)\ncounter = 3\n\n[3] submit()")
    assert observation.endswith("Not run: 1 later call(s); the episode ended.")
    assert info["reward_parts"] == {"progress": 0.2, "task": 1.0}
    assert reward == info["reward_parts"]["progress"] + info["reward_parts"]["task"]


def test_long_outputs_are_clipped_with_head_tail_and_a_note():
    env = Counter(max_tool_output=300)
    env.reset(seed=0)
    observation, *_ = env.step(ToolCall("shout", {"text": "ab", "times": 1000}))
    assert len(observation) < 400
    assert "[... 1700 characters omitted ...]" in observation
    assert clip_output("short", 300) == "short"


def test_the_suite_bad_actions_are_invalid_turns():
    env = Counter()
    for name, action in BAD_ACTIONS.items():
        env.reset(seed=0)
        _, reward, _, _, info = env.step(action)
        assert info["invalid_action"] is True, name
        assert reward == 0.0, name
