"""The pairwise judge: P(response A is better than B), scored in both orders to cancel position bias."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentenv.rewards.base import Sample, Score
from agentenv.rewards.judges.base import Judge, _empty
from agentenv.rewards.judges.fitting import Fitted
from agentenv.rewards.judges.templates import Chat, PromptTemplate
from agentenv.rewards.judges.verdicts import Verdict


def _as_response_sample(x: Any, what: str) -> Sample:
    if isinstance(x, Sample):
        return x
    if isinstance(x, str):
        return Sample(response=x)
    if isinstance(x, Mapping) and isinstance(x.get("response"), str):
        return Sample(**{k: v for k, v in x.items() if k in Sample.__dataclass_fields__})
    raise TypeError(
        f"{what} must be a Sample, a response string or a mapping with a 'response', got {type(x).__name__}"
    )


IDENTICAL = Score(0.5, {"preference": 0.5}, reason="identical responses")


class PairwiseJudge(Judge):
    """P(response A is better than response B), with the position swap that cancels order bias.

    Both orders are scored in one batch and combined as ``0.5 + (P(yes | A, B) - P(yes | B, A)) / 2``, computed for
    a canonical order of the pair, so ``compare(a, b) + compare(b, a) == 1`` exactly (for a deterministic backend)
    and ``compare(a, a) == 0.5`` without a model call.
    As a reward, it scores ``sample.response`` against ``sample.metadata["baseline"]`` (a response or a Sample).
    """

    kind = "pairwise"
    required_fields = frozenset({"prompt", "response_a", "response_b"})
    allowed_fields = frozenset({"prompt", "response_a", "response_b", "reference", "principles"})

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "pairwise",
        principles: Sequence[str] = (), max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)

    def compare(self, a: Sample | str, b: Sample | str) -> float:
        """P(a is better than b) for the same prompt (taken from whichever sample has one)."""
        return self.compare_batch([(a, b)])[0].value

    def compare_batch(self, pairs: Sequence[tuple[Sample | str, Sample | str]]) -> list[Score]:
        chats: list[Chat] = []
        jobs: list[tuple[bool, list[Fitted]] | None] = []  # per pair: (flipped, its two fits), None if identical
        for a, b in ((_as_response_sample(a, "a"), _as_response_sample(b, "b")) for a, b in pairs):
            first, second = (a, b) if (a.response, a.prompt) <= (b.response, b.prompt) else (b, a)
            if first.response == second.response:
                jobs.append(None)  # the same answer in both slots: 0.5 by symmetry, no model call needed
                continue
            prompt, reference = first.prompt or second.prompt, first.reference or second.reference or ""
            fits = []
            for x, y in ((first, second), (second, first)):
                fields = {"prompt": prompt, "response_a": x.response, "response_b": y.response, "reference": reference}
                fits.append(self.fit(lambda f: self.template.render(principles=self.principles_text(), **f), fields))
            chats.extend(f.chat for f in fits)
            jobs.append((first is not a, fits))
        verdicts = iter(self.backend.p_yes(chats))
        return [self._preference(job, next(verdicts), next(verdicts)) if job else IDENTICAL for job in jobs]

    @staticmethod
    def _preference(job: tuple[bool, list[Fitted]], forward: Verdict, backward: Verdict) -> Score:
        """``forward``: P(yes) with the canonical first response as A; ``backward``: with it as B."""
        flipped, fits = job
        if forward.error or backward.error:
            return Score(0.0, {}, reason=f"judge gave no verdict: {forward.error or backward.error}")
        first_wins = 0.5 + (forward.p_yes - backward.p_yes) / 2
        preference = 1.0 - first_wins if flipped else first_wins
        p_ab, p_ba = (backward.p_yes, forward.p_yes) if flipped else (forward.p_yes, backward.p_yes)
        details: dict[str, Any] = {"position_bias": (p_ab + p_ba) / 2 - 0.5}
        truncated = {**fits[0].truncated, **fits[1].truncated}
        if truncated:
            details["truncated"] = truncated
        return Score(preference, {"preference": preference, "p_yes.ab": p_ab, "p_yes.ba": p_ba}, details=details)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        pairs, where = [], []
        for i, s in enumerate(samples):
            if out[i] is not None:
                continue
            baseline = s.metadata.get("baseline") if isinstance(s.metadata, Mapping) else None
            try:
                pairs.append((s, _as_response_sample(baseline, "metadata['baseline']")))
                where.append(i)
            except TypeError as e:
                out[i] = Score(0.0, {}, reason=f"no baseline to compare with: {e}")
        for i, score in zip(where, self.compare_batch(pairs) if pairs else [], strict=True):
            out[i] = score
        return out  # type: ignore[return-value]
