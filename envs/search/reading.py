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

import itertools
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from agentenv.core import TextEnv
from agentenv.errors import ConfigError, check_choice, check_range

SHORT_TYPES = ("entity", "number", "date")
#: Values a document states: dates in the world's three forms, then numbers (with thousands separators).
_DATE = re.compile(r"\b\d{1,2} [A-Z][a-z]+ \d{4}\b|\b[A-Z][a-z]+ \d{1,2}, \d{4}\b|\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+(?:\.\d+)?\b")
_ORDINALS = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}
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

    def format_misses(self, limit: int = 4) -> list[str]:
        """The reference in forms the answer-only rule refuses, each one checked wrong by the rubric (a form it
        accepts, such as '10,690' for '10690', is left out): with the words around it in the documents ('2367 m',
        'the textiles sector', 'in glassmaking'), misspelled ('Brorilamor'), as an ordinal date ('13th June 1960'),
        inside a sentence — one of each kind in turn. The forms a policy's answers drift into, which a judge
        trained on answer formats may accept (co-training adds them as negatives); empty before reset."""
        if self.question is None:
            return []
        q = self.question
        rng = random.Random(f"{self.task_tag}/{q.text}")
        kinds = [
            list(_in_context(q.answers, " ".join(self._shown.split()))),
            _misspellings(q.answer, rng) if q.answer_type == "entity" else [],
            _ordinal_dates(q.answer) if q.answer_type == "date" else [],
            [f"The answer is {q.answer}."],
        ]
        wrong: list[str] = []
        for value in dict.fromkeys(v for row in itertools.zip_longest(*kinds) for v in row if v):
            if len(wrong) >= limit:
                break
            if value not in q.answers and float(self.score_answer(value).value) == 0.0:
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


def _in_context(answers: Sequence[str], text: str) -> Iterator[str]:
    """Each answer where ``text`` first states it, with the words of its sentence around it: 'X m' (and '1,807 m'
    for '1807'), 'in X', 'the X sector'."""
    for answer in answers:
        at = text.find(answer)
        if at < 0:
            continue
        before = re.split(r"(?<=[.!?])\s+", text[:at])[-1].split()[-2:]
        after = re.split(r"[.!?](?:\s|$)", text[at + len(answer) :])[0].split()[:1]
        before = [w for w in (w.strip("[](),;:") for w in before) if w]
        after = [w for w in (w.strip("[](),;:") for w in after) if w]
        digits = answer.replace(",", "")
        separated = [f"{int(digits):,} {after[0]}"] if digits.isdigit() and int(digits) >= 1000 and after else []
        for left, right in (([], after), (before[-1:], []), (before[-1:], after), (before, after)):
            if left or right:
                yield " ".join([*left, answer, *right])
                yield from separated if right and not left else ()


def _misspellings(name: str, rng: random.Random) -> list[str]:
    """``name`` with a vowel changed, a letter dropped and a syllable repeated (at seeded places)."""
    out = []
    vowels = [i for i, ch in enumerate(name) if ch in "aeiou"]
    if vowels:
        i = rng.choice(vowels)
        out.append(name[:i] + rng.choice([v for v in "aeiou" if v != name[i]]) + name[i + 1 :])
    inner = [i for i in range(1, len(name) - 1) if name[i].isalpha() and name[i - 1].isalpha()]
    if inner:
        i = rng.choice(inner)
        out.append(name[:i] + name[i + 1 :])
        j = rng.choice(inner)
        out.append(name[: j + 2] + name[j : j + 2] + name[j + 2 :])
    return [x for x in out if x != name]


def _ordinal_dates(date: str) -> list[str]:
    """'13 June 1960' as '13th June 1960' and 'June 13th, 1960' (the same for 'June 13, 1960')."""
    found = re.fullmatch(r"(\d{1,2}) ([A-Z][a-z]+) (\d{4})", date) or re.fullmatch(
        r"([A-Z][a-z]+) (\d{1,2}), (\d{4})", date
    )
    if not found:
        return []
    first, second, year = found.groups()
    day, month = (first, second) if first.isdigit() else (second, first)
    nth = f"{day}{_ORDINALS.get(int(day), 'th')}"
    return [f"{nth} {month} {year}", f"{month} {nth}, {year}"]
