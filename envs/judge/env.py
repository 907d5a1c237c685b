"""``JudgeEnv``: a judge is one more agent that learns in an env (``AgentEnv/Judge-*``).

Each episode is one judgement from the verification data (:mod:`agentenv.envs.judge.data`). The agent sees the
judging prompt — the question, the reference answer and a response (pointwise), or two responses (pairwise) — and
gives its verdict: ``Yes``/``No``, or ``A``/``B``. With ``reasoning=True`` it must think first, RM-R1 style:
``<think>…</think>`` then the verdict on the last line. The reward is 1 for the right verdict, 0 for the wrong one;
a turn without exactly one readable verdict is an invalid turn (the format check; by default one more turn is
allowed, ``max_turns=2``). ``reward="dense"`` also reads a
stated probability (``Yes 0.8``, ``P(yes) = 0.8``) and pays ``1 - (p - label)^2`` (a Brier score: calibrated
confidence pays, confident mistakes cost most); a bare verdict counts as probability 1.

Cases are drawn half right, half wrong (even task seeds a correct response, odd ones a wrong one; pairwise: the
better response is A on even seeds, B on odd), so a constant verdict earns 0.5 — the family's no-op in
``agentenv redteam``. The env's splits are the data's splits (by question): the test split never trains anything.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from agentenv.core import TextEnv
from agentenv.errors import check_choice

MODES = ("pointwise", "pairwise")
DATA_SIZES = {"small": {"world": 120, "household": 40}, "default": {"world": 600, "household": 200}}

POINTWISE_INSTRUCTIONS = (
    "You are a strict grader. You decide whether a response correctly answers a question, given the reference "
    "answer. A response that says nothing, hedges between answers, or states a different fact is not correct; a "
    "correct answer in another format (words for numbers, different case, extra explanation) is."
)
PAIRWISE_INSTRUCTIONS = (
    "You are a strict grader. You compare two responses to a question, given the reference answer, and say which "
    "one answers it correctly."
)
ANSWER_POINTWISE = "Is the response correct? Answer Yes or No."
ANSWER_PAIRWISE = "Which response is correct? Answer A or B."
THINK = "First reason inside <think>...</think>, then give your verdict alone on the last line."

_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*(.*)$", re.DOTALL)
_PROBABILITY = re.compile(r"^(?:p\s*\(\s*yes\s*\)\s*[=:]?\s*)?(\d*\.?\d+)$", re.IGNORECASE)
_VERDICT_PREFIX = re.compile(r"^(?:verdict|answer|final answer)\s*[:\-]\s*", re.IGNORECASE)


@functools.lru_cache(maxsize=2)
def _data(size: str) -> dict[str, dict[str, list[Any]]]:
    """Cases by split, then by side: pointwise ``{"right": [...], "wrong": [...]}``, pairwise ``{"pairs": [...]}``."""
    from agentenv.envs.judge.data import build_cases, pairwise_cases

    cases = [c for c in build_cases(**DATA_SIZES[size]) if c.response.strip()]  # an empty response needs no judge
    out: dict[str, dict[str, list[Any]]] = {}
    for case in cases:
        side = out.setdefault(case.split, {"right": [], "wrong": [], "pairs": []})
        side["right" if case.label else "wrong"].append(case)
    for pair in pairwise_cases(cases):
        if pair["label"] == "A":  # one per pair; the seed picks the order
            out[pair["split"]]["pairs"].append(pair)
    return out


def read_verdict(text: str, choices: tuple[str, str], *, reasoning: bool) -> tuple[str | None, float | None, str]:
    """``(verdict, stated probability or None, problem)`` of a turn; the verdict is ``None`` with the problem."""
    body = text.strip()
    if reasoning:
        match = _THINK.match(body)
        if not match:
            return None, None, "reason inside <think>...</think> first, then give the verdict on the last line"
        if not match.group(1).strip():
            return None, None, "the <think> block is empty"
        body = match.group(2).strip()
    if not body:
        return None, None, f"no verdict: answer {choices[0]} or {choices[1]}"
    line = _VERDICT_PREFIX.sub("", body.splitlines()[-1].strip()).strip().rstrip(".").strip()
    words = line.replace(",", " ").split()
    if not words:
        return None, None, f"no verdict: answer {choices[0]} or {choices[1]}"
    verdict = next((c for c in choices if words[0].lower() == c.lower()), None)
    if verdict is None or any(w.lower().strip("()") in (c.lower() for c in choices) for w in words[1:]):
        return None, None, f"give exactly one verdict, {choices[0]} or {choices[1]}, on the last line"
    probability = None
    if len(words) > 1:
        match = _PROBABILITY.match(" ".join(words[1:]).strip("()"))
        if not match or float(match.group(1)) > 1:
            return None, None, f"after the verdict, only a probability in [0, 1] may follow (e.g. '{choices[0]} 0.8')"
        probability = float(match.group(1))
    return verdict, probability, ""


class JudgeEnv(TextEnv):
    """Judge a response (pointwise: Yes/No) or two (pairwise: A/B) against the reference; see the module docstring.

    Knobs: ``mode`` (pointwise / pairwise), ``reasoning`` (think first, then the verdict), ``data_size``
    (small: 160 questions, default: 800). Reward modes: sparse (right verdict) / dense (Brier score of a stated
    probability).
    """

    family = "judge"
    hack_module = "agentenv.envs.judge.hacks"
    reward_modes = ("sparse", "dense")
    multiline_actions = True  # a verdict may follow its reasoning on later lines

    def __init__(
        self, *, mode: str = "pointwise", reasoning: bool = False, data_size: str = "default", max_turns: int = 2,
        max_action_length: int = 4096, **kwargs: Any,
    ):  # fmt: skip
        super().__init__(max_turns=max_turns, max_action_length=max_action_length, **kwargs)
        check_choice("mode", mode, MODES)
        check_choice("reasoning", reasoning, (True, False))
        check_choice("data_size", data_size, tuple(DATA_SIZES))
        self.mode, self.reasoning, self.data_size = mode, reasoning, data_size
        self.choices = ("Yes", "No") if mode == "pointwise" else ("A", "B")
        base = POINTWISE_INSTRUCTIONS if mode == "pointwise" else PAIRWISE_INSTRUCTIONS
        self.instructions = base + ("\n" + THINK if reasoning else "")
        self.case: Any = None
        self.label: str | None = None

    @property
    def task_tag(self) -> str:
        return f"judge-{self.mode}{'-think' if self.reasoning else ''}-{self.data_size}"

    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        split = _data(self.data_size)[self.split]
        index = task_seed // 2
        if self.mode == "pointwise":
            side = split["right"] if task_seed % 2 == 0 else split["wrong"]
            self.case = side[_spread(index, len(side))]
            self.label = "Yes" if self.case.label else "No"
            prompt = (f"Question: {self.case.question}\nReference answer: {self.case.reference}\n\n"
                      f"Response: {self.case.response}\n\n{ANSWER_POINTWISE}")  # fmt: skip
            meta = {"category": self.case.category, "case_id": self.case.id}
        else:
            pairs = split["pairs"]
            pair = pairs[_spread(index, len(pairs))]
            good_first = task_seed % 2 == 0
            a, b = (pair["a"], pair["b"]) if good_first else (pair["b"], pair["a"])
            self.case, self.label = pair, "A" if good_first else "B"
            prompt = (f"Question: {pair['question']}\nReference answer: {pair['reference']}\n\n"
                      f"Response A: {a}\n\nResponse B: {b}\n\n{ANSWER_PAIRWISE}")  # fmt: skip
            meta = {"category": pair["category"], "case_id": pair["pair_id"] + ("/ab" if good_first else "/ba")}
        if self.reasoning:
            prompt += "\n" + THINK
        return prompt, {"optimal_steps": 1, **meta}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:  # type: ignore[override]
        verdict, probability, problem = read_verdict(action, self.choices, reasoning=self.reasoning)
        if verdict is None:
            observation, reward, terminated, info = self._step_invalid(problem)
            return observation, reward, terminated, {**info, "invalid_action": True, "invalid_reason": problem}
        right = verdict == self.label
        if self.reward_mode == "dense":
            said_first = verdict == self.choices[0]
            p_first = (probability if said_first else 1 - probability) if probability is not None else float(said_first)
            truth = 1.0 if self.label == self.choices[0] else 0.0
            reward = 1.0 - (p_first - truth) ** 2
        else:
            reward = float(right)
        info = {"success": right, "verdict": verdict, "label": self.label, "reward_parts": {"verdict": reward}}
        feedback = "Right." if right else f"Wrong: the verdict is {self.label}."
        return feedback, reward, True, info

    def _step_invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        return f"Invalid verdict: {reason}.", 0.0, False, {"reward_parts": {"verdict": 0.0}}

    def walkthrough(self) -> list[str] | None:
        if self.label is None or self._done:
            return None
        if not self.reasoning:
            return [self.label]
        return [f"<think>{self.reasoning_text()}</think>\n{self.label}"]

    def reasoning_text(self) -> str:
        """The demonstration's reasoning (quote, compare, conclude): the reference, what the response says, and
        whether it gives the reference's answer — what the SFT stage of a reasoning judge imitates."""
        case = self.case
        if self.mode == "pointwise":
            verdict = ("It gives the reference answer." if self.label == "Yes"
                       else "It does not give the reference answer.")  # fmt: skip
            quoted = f"The reference answer is {_quote(case.reference)}. The response says {_quote(case.response)}."
            return f"{quoted} {verdict}"
        good_first = self.label == "A"
        a, b = (case["a"], case["b"]) if good_first else (case["b"], case["a"])
        return (f"The reference answer is {_quote(case['reference'])}. Response A says {_quote(a)}. Response B says "
                f"{_quote(b)}. Response {self.label} gives the reference answer.")  # fmt: skip

    def admissible_commands(self) -> list[str] | None:
        if self.reasoning:
            return None
        return list(self.choices)


def _quote(text: str, limit: int = 80) -> str:
    """``text`` in quotes on one line, its end kept when long (answers tend to come last)."""
    flat = " ".join(str(text).split())
    return f'"{flat}"' if len(flat) <= limit else f'"...{flat[-limit:]}"'


def _spread(index: int, size: int) -> int:
    """``index`` mapped onto ``range(size)`` by a fixed stride coprime with ``size``, so that consecutive seeds visit
    questions far apart (cases of one question sit together in the data)."""
    stride = 7919  # a prime
    while size and size % stride == 0:
        stride += 2
    return (index * stride) % size if size else 0
