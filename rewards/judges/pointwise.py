"""The pointwise judge: P("Yes") that a response is correct, with optional principles and sampled critiques."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentenv.errors import check_choice, check_range
from agentenv.rewards.base import Sample, Score
from agentenv.rewards.judges.base import Judge, _details, _empty
from agentenv.rewards.judges.fitting import Fitted
from agentenv.rewards.judges.templates import Chat, PromptTemplate, as_template
from agentenv.rewards.judges.verdicts import Verdict

AGGREGATES = ("mean", "vote")


class PointwiseJudge(Judge):
    """P("Yes") that the response answers the prompt correctly (given the reference and principles, if any).

    ``threshold`` turns the value into 0/1 (``p_yes >= threshold``); ``p_yes`` stays in the parts. With
    ``critiques=k`` the judge first samples k short critiques, reads P("Yes") after each, and aggregates them by
    ``mean`` or ``vote`` (the share of critiques whose verdict is yes) — DeepSeek-GRM's sampling-and-voting.
    """

    kind = "pointwise"
    required_fields = frozenset({"prompt", "response"})
    allowed_fields = frozenset({"prompt", "response", "reference", "principles"})

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "pointwise",
        principles: Sequence[str] = (), threshold: float | None = None, critiques: int = 0,
        critique_template: str | Path | PromptTemplate = "critique", aggregate: str = "mean",
        max_new_tokens: int = 40, temperature: float = 0.7, seed: int = 0, max_prompt_tokens: int | None = None,
        generate_principles: int = 0, principles_template: str | Path | PromptTemplate = "principles",
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_range("generate_principles", generate_principles, 0, 20, integer=True)
        self.generate_principles = generate_principles
        self.principles_template = as_template(principles_template)
        if generate_principles:
            self.principles_template.check(
                "principle generation", frozenset({"prompt"}), frozenset({"prompt", "reference", "count"})
            )
        self._generated: dict[tuple[str, str], tuple[str, ...]] = {}
        if threshold is not None:
            check_range("threshold", threshold, 0, 1)
        check_range("critiques", critiques, 0, integer=True)
        check_choice("aggregate", aggregate, AGGREGATES)
        check_range("max_new_tokens", max_new_tokens, 1, integer=True)
        check_range("temperature", temperature, 0)
        self.threshold, self.critiques, self.aggregate = threshold, critiques, aggregate
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.critique_template = as_template(critique_template)
        if critiques:
            self.critique_template.check("critique", self.required_fields, self.allowed_fields, ("verdict",))

    def extra_repr(self) -> str:
        extra = f", critiques={self.critiques}, aggregate={self.aggregate!r}" if self.critiques else ""
        extra += f", generate_principles={self.generate_principles}" if self.generate_principles else ""
        return super().extra_repr() + (f", threshold={self.threshold:g}" if self.threshold is not None else "") + extra

    def _fields(self, sample: Sample) -> dict[str, str]:
        principles = (*self.principles, *self._generated.get((sample.prompt, sample.reference or ""), ()))
        return {"prompt": sample.prompt, "response": sample.response, "reference": sample.reference or "",
                "principles": "\n".join(f"- {p}" for p in principles)}  # fmt: skip

    def _render(self, template: PromptTemplate) -> Callable[[dict[str, str]], Chat]:
        return lambda f: template.render(**f)

    def principles_for(self, samples: Sequence[Sample]) -> list[tuple[str, ...]]:
        """The principles the judge wrote for each sample's question (DeepSeek-GRM): generated once per distinct
        (prompt, reference), greedily, at most ``generate_principles`` each; given ``principles`` come first."""
        keys = [(s.prompt, s.reference or "") for s in samples]
        todo = list(dict.fromkeys(k for k in keys if k not in self._generated))
        if todo and self.generate_principles:
            from agentenv.rewards.nuggets import bullet_lines

            chats = [
                self.principles_template.render(prompt=p, reference=r, count=str(self.generate_principles))
                for p, r in todo
            ]
            outputs = self.backend.generate(chats, n=1, max_new_tokens=24 * self.generate_principles, temperature=0.0)
            for key, texts in zip(todo, outputs, strict=True):
                self._generated[key] = tuple(bullet_lines(texts[0] if texts else "", limit=self.generate_principles))
        return [(*self.principles, *self._generated.get(k, ())) for k in keys]

    def _value(self, p_yes: float) -> float:
        return p_yes if self.threshold is None else float(p_yes >= self.threshold)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        todo = [i for i, s in enumerate(out) if s is None]
        if self.generate_principles:
            self.principles_for([samples[i] for i in todo])
        if self.critiques:
            scored = self._with_critiques([samples[i] for i in todo])
        else:
            fitted = [self.fit(self._render(self.template), self._fields(samples[i])) for i in todo]
            verdicts = self.backend.p_yes([f.chat for f in fitted])
            scored = [self._score(v, f) for v, f in zip(verdicts, fitted, strict=True)]
        for i, score in zip(todo, scored, strict=True):
            out[i] = score
        return out  # type: ignore[return-value]

    def _score(self, verdict: Verdict, fitted: Fitted) -> Score:
        if verdict.error:
            return Score(0.0, {}, reason=f"judge gave no verdict: {verdict.error}")
        return Score(self._value(verdict.p_yes), {"p_yes": verdict.p_yes}, details=_details(verdict, fitted))

    def _with_critiques(self, samples: Sequence[Sample]) -> list[Score]:
        render = self._render(self.critique_template)
        fitted = [self.fit(render, self._fields(s), reserve=self.max_new_tokens + 64) for s in samples]
        critiques = self.backend.generate(
            [f.chat for f in fitted], n=self.critiques, max_new_tokens=self.max_new_tokens,
            temperature=self.temperature, seed=self.seed,
        )  # fmt: skip
        follow_ups, owners = [], []
        for i, (f, texts) in enumerate(zip(fitted, critiques, strict=True)):
            for text in texts:
                follow_ups.append(
                    [
                        *f.chat,
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": self.critique_template.verdict},
                    ]
                )
                owners.append(i)
        verdicts = self.backend.p_yes(follow_ups) if follow_ups else []
        per_sample: list[list[Verdict]] = [[] for _ in samples]
        for owner, verdict in zip(owners, verdicts, strict=True):
            per_sample[owner].append(verdict)
        out = []
        for f, texts, got in zip(fitted, critiques, per_sample, strict=True):
            ok = [v for v in got if not v.error]
            if not ok:
                why = got[0].error if got else "no critique was generated"
                out.append(Score(0.0, {}, reason=f"judge gave no verdict: {why}"))
                continue
            mean = sum(v.p_yes for v in ok) / len(ok)
            vote = sum(v.p_yes >= 0.5 for v in ok) / len(ok)
            parts = {"p_yes": mean, "vote": vote, **{f"critique.{k}": v.p_yes for k, v in enumerate(ok)}}
            details = {"critiques": texts, "mass": sum(v.mass for v in ok) / len(ok)}
            if f.truncated:
                details["truncated"] = f.truncated
            value = self._value(mean) if self.aggregate == "mean" else self._value(vote)
            out.append(Score(value, parts, details=details))
        return out
