"""The process judge (GenPRM-style): P("Yes") that each assistant step of a conversation is correct and useful."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentenv.errors import check_choice
from agentenv.rewards.base import Sample, Score
from agentenv.rewards.judges.base import Judge
from agentenv.rewards.judges.fitting import Fitted
from agentenv.rewards.judges.templates import PromptTemplate
from agentenv.rewards.judges.verdicts import Verdict

PROCESS_AGGREGATES = ("mean", "min")


class ProcessJudge(Judge):
    """P("Yes") that each assistant step in ``sample.messages`` is correct and useful, given what came before.

    The steps are the assistant messages, plus ``sample.response`` when it is not already the last of them.
    Parts ``step.<i>`` hold each step's P("Yes"); the value is their ``mean`` or ``min`` (one bad step sinks it).
    """

    kind = "process"
    required_fields = frozenset({"step", "history"})
    allowed_fields = frozenset({"prompt", "step", "history", "index", "reference", "principles"})
    template_needs = ("item",)

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "process",
        principles: Sequence[str] = (), aggregate: str = "mean", max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_choice("aggregate", aggregate, PROCESS_AGGREGATES)
        self.aggregate = aggregate

    @staticmethod
    def steps(sample: Sample) -> tuple[list[dict[str, str]], list[int]]:
        """The conversation as role/content text, and the positions of the assistant steps in it."""
        messages = [_as_message(m) for m in sample.messages]
        if sample.response.strip() and not (
            messages and messages[-1] == {"role": "assistant", "content": sample.response}
        ):
            messages.append({"role": "assistant", "content": sample.response})
        return messages, [k for k, m in enumerate(messages) if m["role"] == "assistant"]

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [None] * len(samples)
        chats, fits, owners = [], [], []
        for i, sample in enumerate(samples):
            messages, positions = self.steps(sample)
            if not positions:
                out[i] = Score(0.0, {}, reason="no assistant steps to judge")
                continue
            prompt = sample.prompt or next((m["content"] for m in messages if m["role"] == "user"), "")
            for n, pos in enumerate(positions):
                history = "".join(self.template.item.format(**m) for m in messages[:pos]) or "(nothing yet)\n"
                fields = {"prompt": prompt, "history": history, "step": messages[pos]["content"],
                          "reference": sample.reference or ""}  # fmt: skip
                render = lambda f, n=n: self.template.render(index=str(n + 1), principles=self.principles_text(), **f)  # noqa: E731
                fitted = self.fit(render, fields, keep_tail=("history",))
                chats.append(fitted.chat)
                fits.append(fitted)
                owners.append(i)
        verdicts = self.backend.p_yes(chats) if chats else []
        per_sample: dict[int, list[tuple[Verdict, Fitted]]] = {}
        for owner, verdict, fitted in zip(owners, verdicts, fits, strict=True):
            per_sample.setdefault(owner, []).append((verdict, fitted))
        for i, got in per_sample.items():
            errors = [v.error for v, _ in got if v.error]
            if errors:
                out[i] = Score(0.0, {}, reason=f"judge gave no verdict for {len(errors)} step(s): {errors[0]}")
                continue
            p = [v.p_yes for v, _ in got]
            value = sum(p) / len(p) if self.aggregate == "mean" else min(p)
            truncated = {f"step.{k}": f.truncated for k, (_, f) in enumerate(got) if f.truncated}
            details: dict[str, Any] = {"steps": len(p)}
            if truncated:
                details["truncated"] = truncated
            out[i] = Score(value, {f"step.{k}": x for k, x in enumerate(p)}, details=details)
        return out  # type: ignore[return-value]


def _as_message(m: Any) -> dict[str, str]:
    """A message as role and plain text, whatever shape it came in (content parts, tool calls, not a dict)."""
    if not isinstance(m, Mapping):
        return {"role": "user", "content": str(m)}
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    text = "" if content is None else str(content)
    if m.get("tool_calls"):
        text += ("\n" if text else "") + "tool calls: " + json.dumps(m["tool_calls"], default=str)
    return {"role": str(m.get("role", "user")), "content": text}
