"""The group judge (RULER-style): each response judged with the whole group of responses to its prompt."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agentenv.errors import check_choice, check_range
from agentenv.rewards.base import Sample, Score
from agentenv.rewards.judges.base import Judge, _details, _empty
from agentenv.rewards.judges.templates import Chat, PromptTemplate

GROUP_NORMALIZE = ("none", "minmax", "rank")


class GroupJudge(Judge):
    """RULER-style relative scores: every response is judged with all responses to the same prompt in context.

    Samples are grouped by ``metadata["group_id"]`` when present, else by prompt. For each member the judge lists
    the group with that member first (so position bias hits every member alike) and reads P("Yes") that it is the
    best; the prompt and reference shown are the first member's. ``normalize``: ``none`` (the raw P("Yes"), in
    [0, 1]), ``minmax`` (best 1, worst 0 within a group) or ``rank`` (1 for the best down to 0 for the worst, ties
    averaged). Cost: n prompts of n responses each, per group.
    """

    kind = "group"
    required_fields = frozenset({"prompt", "responses"})
    allowed_fields = frozenset({"prompt", "responses", "count", "reference", "principles"})
    template_needs = ("item",)

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "group", principles: Sequence[str] = (),
        normalize: str = "none", max_group: int = 16, max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_choice("normalize", normalize, GROUP_NORMALIZE)
        check_range("max_group", max_group, 1, integer=True)
        self.normalize, self.max_group = normalize, max_group

    def groups(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Indices of the samples judged together, at most ``max_group`` each, in order of first appearance."""
        by_key: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            meta = s.metadata if isinstance(s.metadata, Mapping) else {}
            key = f"id:{meta['group_id']}" if meta.get("group_id") is not None else f"prompt:{s.prompt}"
            by_key.setdefault(key, []).append(i)
        return [g[k : k + self.max_group] for g in by_key.values() for k in range(0, len(g), self.max_group)]

    def _render(self, order: Sequence[str]) -> Callable[[dict[str, str]], Chat]:
        def render(f: dict[str, str]) -> Chat:
            listing = "".join(
                self.template.item.format(index=k + 1, response=f[f"response.{k}"]) for k in range(len(order))
            )
            return self.template.render(
                prompt=f["prompt"], reference=f["reference"], principles=self.principles_text(), responses=listing,
                count=str(len(order)),
            )  # fmt: skip

        return render

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        chats, fits, members = [], [], []
        groups = [[i for i in g if out[i] is None] for g in self.groups(samples)]
        groups = [g for g in groups if g]
        for group in groups:
            first = samples[group[0]]
            for j in range(len(group)):
                rotated = group[j:] + group[:j]  # the member asked about is always "Response 1"
                fields = {"prompt": first.prompt, "reference": first.reference or ""}
                fields.update({f"response.{k}": samples[i].response for k, i in enumerate(rotated)})
                fitted = self.fit(self._render(rotated), fields)
                chats.append(fitted.chat)
                fits.append(fitted)
            members.append(group)
        verdicts = iter(zip(self.backend.p_yes(chats) if chats else [], fits, strict=True))
        for group in members:
            got = [next(verdicts) for _ in group]
            values = self._normalized([v.p_yes for v, _ in got])
            for i, (verdict, fitted), value in zip(group, got, values, strict=True):
                if verdict.error:
                    out[i] = Score(0.0, {}, reason=f"judge gave no verdict: {verdict.error}")
                    continue
                details = {**_details(verdict, fitted), "group": group, "group_size": len(group)}
                out[i] = Score(value, {"p_yes": verdict.p_yes}, details=details)
        return out  # type: ignore[return-value]

    def _normalized(self, p: list[float]) -> list[float]:
        ok = [x for x in p if not math.isnan(x)]
        if self.normalize == "none" or len(ok) < 2:
            return [0.0 if math.isnan(x) else x for x in p]
        if self.normalize == "minmax":
            low, high = min(ok), max(ok)
            return [0.0 if math.isnan(x) else (x - low) / (high - low) if high > low else 0.5 for x in p]
        ranks = [sum(y < x for y in ok) + 0.5 * (sum(y == x for y in ok) - 1) for x in ok]  # 0 = worst
        it = iter(r / (len(ok) - 1) for r in ranks)
        return [0.0 if math.isnan(x) else next(it) for x in p]
