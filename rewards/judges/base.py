"""What every judge shares: a backend, a prompt template, principles and the context budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agentenv.errors import check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.judges.backends import _CALLER_LOOP, as_backend
from agentenv.rewards.judges.fitting import Fitted, fit
from agentenv.rewards.judges.templates import Chat, PromptTemplate, as_template
from agentenv.rewards.judges.verdicts import Verdict


class Judge(Reward):
    """Shared by the judges: a backend, a prompt template, principles and the context budget."""

    kind = ""
    required_fields: ClassVar[frozenset[str]] = frozenset()
    allowed_fields: ClassVar[frozenset[str]] = frozenset()
    template_needs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate, principles: Sequence[str] = (),
        max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__()
        self.backend = as_backend(backend)
        self.template = as_template(template)
        self.template.check(self.kind, self.required_fields, self.allowed_fields, self.template_needs)
        if isinstance(principles, str):
            principles = [principles]
        self.principles = tuple(str(p) for p in principles)
        if max_prompt_tokens is not None:
            check_range("max_prompt_tokens", max_prompt_tokens, 16, integer=True)
        self.max_prompt_tokens = max_prompt_tokens

    def extra_repr(self) -> str:
        return f"{self.backend!r}, template={self.template.name!r}"

    async def abatch(self, samples: Any, **context: Any) -> list[Score]:
        # The model calls run in a worker thread (see Reward.abatch); HTTP requests come back to this loop.
        token = _CALLER_LOOP.set(asyncio.get_running_loop())
        try:
            return await super().abatch(samples, **context)
        finally:
            _CALLER_LOOP.reset(token)

    def budget(self, reserve: int = 1) -> int:
        limit = self.backend.context_tokens - reserve
        return min(limit, self.max_prompt_tokens) if self.max_prompt_tokens else limit

    def principles_text(self) -> str:
        return "\n".join(f"- {p}" for p in self.principles)

    def fit(self, render: Callable[[dict[str, str]], Chat], fields: dict[str, str], **kw: Any) -> Fitted:
        return fit(render, fields, self.backend.count_tokens, self.budget(kw.pop("reserve", 1)), **kw)


def _details(verdict: Verdict, fitted: Fitted) -> dict[str, Any]:
    details: dict[str, Any] = {"mass": verdict.mass}
    if fitted.truncated:
        details["truncated"] = fitted.truncated
    if verdict.truncated_tokens:
        details["truncated_tokens"] = verdict.truncated_tokens
    return details


def _empty(sample: Sample) -> Score | None:
    if not sample.response.strip():
        return Score(0.0, {}, reason="empty response")
    return None
