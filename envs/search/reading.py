"""``ReadingEnv``: one question about the search world, with the documents that answer it shown (``AgentEnv/
Search-World-Read-v0``).

The search env without the search: the observation is the gold documents (clipped around the answer) and the
question; the agent answers in one free-text turn, and the search env's own rubric grades it (guards against
master keys, hedges, padding and echoes, then exact match for a name, number or date). It is the cheap single-turn
task where a policy's reward can come from a judge while the rule verifier keeps the truth: policy–judge
co-training (``agentenv.policies.cotrain``) runs on it. ``info`` carries what a judge needs: ``question``,
``reference`` and, after the answer, ``answer`` and ``verified`` (the rubric's score).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agentenv.core import TextEnv
from agentenv.errors import ConfigError, check_choice, check_range

SHORT_TYPES = ("entity", "number", "date")
#: Values a document states: dates in the world's three forms, then numbers (with thousands separators).
_DATE = re.compile(r"\b\d{1,2} [A-Z][a-z]+ \d{4}\b|\b[A-Z][a-z]+ \d{1,2}, \d{4}\b|\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+(?:\.\d+)?\b")
INSTRUCTIONS = (
    "Read the documents and answer the question with the answer only: a name, a number or a date, as the "
    "documents state it."
)


class ReadingEnv(TextEnv):
    """Answer a question about the documents shown (see the module docstring). Knobs: ``hops`` (1-4),
    ``answer_types`` (of entity / number / date), ``context_chars`` (characters of each document shown),
    ``world_seed``/``world_size`` (the search world)."""

    family = "reading"
    reward_modes = ("sparse",)
    hack_module = "agentenv.envs.search.reading_hacks"
    multiline_actions = True  # a free-text answer; the rubric, not the line count, refuses padding
    instructions = INSTRUCTIONS

    def __init__(
        self, *, hops: int = 1, answer_types: Sequence[str] = SHORT_TYPES, context_chars: int = 400,
        world_seed: int = 0, world_size: str = "default", max_turns: int = 2, max_action_length: int = 512,
        **kwargs: Any,
    ):  # fmt: skip
        super().__init__(max_turns=max_turns, max_action_length=max_action_length, **kwargs)
        check_range("hops", hops, 1, 4, integer=True)
        types = tuple(answer_types)
        if not types:
            raise ConfigError("answer_types must name at least one of entity, number, date")
        for t in types:
            check_choice("answer_types", t, SHORT_TYPES)
        check_range("context_chars", context_chars, 100, 20_000, integer=True)
        check_range("world_seed", world_seed, 0, integer=True)
        from agentenv.envs.search.world import WORLD_SIZES

        check_choice("world_size", world_size, list(WORLD_SIZES))
        self.hops, self.answer_types, self.context_chars = hops, types, context_chars
        self.world_seed, self.world_size = world_seed, world_size
        self.question: Any = None
        self._rubric: Any = None
        self._shown = ""

    @property
    def task_tag(self) -> str:
        return f"read-world{self.world_seed}-{self.world_size}-h{self.hops}-{'+'.join(self.answer_types)}"

    def _world(self) -> Any:
        from agentenv.envs.search.env import _world

        return _world(self.world_seed, self.world_size, 0.2)

    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        world = self._world()
        self.question = q = world.question(task_seed, hops=self.hops, answer_types=self.answer_types)
        shown = [self._clip(world.corpus[d].title, world.corpus[d].text, q) for d in q.gold_docs]
        observation = "\n\n".join(shown) + f"\n\nQuestion: {q.text}"
        self._shown = "\n\n".join(shown)
        info = {"optimal_steps": 1, "question": q.text, "reference": q.answer, "answer_type": q.answer_type}
        return observation, info

    def _clip(self, title: str, text: str, q: Any) -> str:
        """The document around the first place it states an accepted answer (else its start)."""
        limit = self.context_chars
        if len(text) > limit:
            at = min((i for i in (text.find(a) for a in q.answers) if i >= 0), default=0)
            start = max(0, min(at - limit // 2, len(text) - limit))
            text = ("..." if start else "") + text[start : start + limit] + ("..." if start + limit < len(text) else "")
        return f"[{title}]\n{text}"

    def score_answer(self, text: str) -> Any:
        """The search env's rubric on ``text`` as the answer to the current question."""
        from agentenv.envs.search.env import answer_rubric
        from agentenv.rewards.base import Sample

        if self._rubric is None:
            self._rubric = {t: answer_rubric(t) for t in SHORT_TYPES}
        q = self.question
        metadata = {"references": [q.answer, *q.aliases], "nuggets": list(q.nuggets), "items": []}
        return self._rubric[q.answer_type](Sample(response=text, prompt=q.text, reference=q.answer, metadata=metadata))

    def near_misses(self, limit: int = 6) -> list[str]:
        """Wrong answers the documents shown suggest, each one checked wrong by the rubric: first the documents'
        sentence that states the answer (a sentence frame, which the answer-only rule refuses), then the other
        names, numbers and dates they state, those of the question's answer type first. The hard negatives a judge
        must refuse (co-training adds them to the judge's training data, Cooper-style); empty before reset."""
        if self.question is None:
            return []
        world, text = self._world(), self._shown
        dates = _DATE.findall(text)
        numbers = _NUMBER.findall(_DATE.sub(" ", text))
        names = [name for name in world.by_name if name in text]
        by_type = {"date": dates, "number": numbers, "entity": names}
        sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", text.replace("\n", " "))]
        framed = [x for x in sentences if any(a in x for a in self.question.answers)][:1]
        ordered = framed + by_type[self.question.answer_type] + [v for t, vs in by_type.items()
                                                        if t != self.question.answer_type for v in vs]  # fmt: skip
        wrong: list[str] = []
        for value in dict.fromkeys(ordered):
            if len(wrong) >= limit:
                break
            if float(self.score_answer(value).value) == 0.0:
                wrong.append(value)
        return wrong

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:  # type: ignore[override]
        score = self.score_answer(action)
        reward = float(score.value)
        info = {"success": reward >= 1.0, "answer": action, "verified": reward, "question": self.question.text,
                "reference": self.question.answer, "reward_parts": {"answer": reward}}  # fmt: skip
        return ("Correct." if reward >= 1.0 else "Not correct."), reward, True, info

    def walkthrough(self) -> list[str] | None:
        return None if self.question is None or self._done else [self.question.oracle_answer()]
