"""The :class:`Question` record that every search corpus produces and the search env consumes.

A question carries its reference answer in the forms a reward checks (``answer``, ``aliases``, ``nuggets``), the
documents that hold the evidence (``gold_docs``, one or more per hop) and, in ``meta``, how it was made (the relation
chain, per-hop search terms for a scripted oracle). Questions are saved as JSONL beside their corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What kind of answer a question expects; the env picks a reward by it.
ANSWER_TYPES = ("entity", "number", "date", "list", "open")


@dataclass(frozen=True)
class Question:
    """One question over a corpus.

    ``answer`` is the canonical short answer ("" only for ``answer_type == "open"``); ``aliases`` are other accepted
    spellings; ``nuggets`` are the atomic facts a complete answer contains (for ``list`` the members, for ``open``
    one sentence per fact, else the answer itself). ``gold_docs`` are the ids of the documents that together contain
    the answer, in hop order. ``hops`` counts relation steps from what the question names to the answer.
    """

    id: str
    text: str
    answer: str
    aliases: tuple[str, ...]
    answer_type: str
    nuggets: tuple[str, ...]
    gold_docs: tuple[str, ...]
    hops: int
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"question {self.id!r}: answer_type={self.answer_type!r}; allowed: {ANSWER_TYPES}")
        if not self.answer and self.answer_type != "open":
            raise ValueError(f"question {self.id!r}: an empty answer is allowed only for answer_type 'open'")

    @property
    def answers(self) -> tuple[str, ...]:
        """Every accepted form: the canonical answer first, then the aliases (none for open questions)."""
        return tuple(dict.fromkeys(a for a in (self.answer, *self.aliases) if a))

    def oracle_steps(self) -> list[tuple[str, str]]:
        """What a scripted oracle does, in order: ``(query to search, document id to open)``, each document once.

        From ``meta["steps"]`` (``{"search": ..., "doc": ...}`` per hop fact); without them, the question text
        then each gold document.
        """
        steps = self.meta.get("steps") or [{"search": self.text, "doc": d} for d in self.gold_docs]
        plan: dict[str, str] = {}
        for step in steps:
            plan.setdefault(step["doc"], step["search"])
        return [(query, doc) for doc, query in plan.items()]

    def oracle_answer(self) -> str:
        """A complete, correct answer: the canonical answer, or for open questions every nugget as a sentence."""
        if self.answer_type == "open":
            return " ".join(n.rstrip(".") + "." for n in self.nuggets)
        return self.answer

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "answer": self.answer,
            "aliases": list(self.aliases),
            "answer_type": self.answer_type,
            "nuggets": list(self.nuggets),
            "gold_docs": list(self.gold_docs),
            "hops": self.hops,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Question:
        return cls(
            id=str(raw["id"]),
            text=str(raw["text"]),
            answer=str(raw.get("answer", "")),
            aliases=tuple(raw.get("aliases") or ()),
            answer_type=str(raw["answer_type"]),
            nuggets=tuple(raw.get("nuggets") or ()),
            gold_docs=tuple(raw.get("gold_docs") or ()),
            hops=int(raw.get("hops", 1)),
            meta=raw.get("meta") or {},
        )


def save_questions(path: str | Path, questions: Iterable[Question]) -> Path:
    """Write ``questions`` as JSONL (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def load_questions(path: str | Path) -> list[Question]:
    """Read questions written by :func:`save_questions`; a bad line raises naming the file and line."""
    path = Path(path)
    questions = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                questions.append(Question.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n}: not a question record ({e})") from e
    return questions
