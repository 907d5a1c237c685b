"""A rule-based pairwise judge for answers argued from documents: which side states the verifiably correct answer
with evidence quoted from the documents. No model: deterministic and offline, the default judge of the debate game.

It speaks :class:`~agentenv.rewards.judges.PairwiseJudge`'s interface (``compare``, ``compare_batch``, and as a
reward ``sample.response`` against ``metadata["baseline"]``), so either can judge wherever the other does. Quotes
are checked the way debate protocols verify them (Khan et al., 2024: a quote counts only if it is in the text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentenv.errors import check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.extract import after_prefix
from agentenv.rewards.judges.pairwise import IDENTICAL, _as_response_sample
from agentenv.rewards.rules import NumericMatch, normalize_answer, references, same_answer

#: Text in straight or curly double quotes, on one line.
_QUOTE = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”")
#: What each check is worth to a side's credibility (a fabricated quote costs ``FABRICATED`` each).
WEIGHTS = {"quoted": 0.25, "supported": 0.25, "verified": 0.5}
FABRICATED = 0.25


def _contains(text: str, span: str) -> bool:
    """Whether ``span`` is a run of whole tokens of ``text`` after SQuAD normalisation (case, punctuation)."""
    return f" {normalize_answer(span)} " in f" {normalize_answer(text)} "


class EvidenceJudge(Reward):
    """P(side a argued better than side b) from checks on each side's text, no model.

    A side is a :class:`Sample`: ``response`` is its argument, its claimed answer is ``metadata["answer"]`` (else
    what follows its last "Answer:"), the documents are ``metadata["documents"]`` (else the prompt) and the correct
    answer is the reference (and ``metadata["references"]``). Quotes are spans in double quotes of at least
    ``min_quote_tokens`` tokens. A side's credibility in [0, 1]:

    * ``quoted`` (0.25): some quote is in the documents (verbatim up to case, punctuation and whitespace);
    * ``supported`` (0.25): such a quote contains the claimed answer;
    * ``verified`` (0.5): it is supported and the claimed answer is correct (exact match after normalisation, or the
      same number exactly);
    * each quote that is not in the documents costs 0.25 (down to 0).

    ``compare(a, b) = 0.5 + (credibility(a) - credibility(b)) / 2``: ``compare(a, b) + compare(b, a) == 1`` and
    ``compare(a, a) == 0.5``. Both sides quoting true sentences for their answers, the correct one wins; a side that
    does not back its answer loses to one that quotes a true sentence for a wrong answer.
    """

    def __init__(self, *, min_quote_tokens: int = 4):
        super().__init__()
        check_range("min_quote_tokens", min_quote_tokens, 1, integer=True)
        self.min_quote_tokens = min_quote_tokens
        self.numbers = NumericMatch(rel_tol=0.0, abs_tol=0.0, units="ignore")

    def extra_repr(self) -> str:
        return f"min_quote_tokens={self.min_quote_tokens}"

    def credibility(self, side: Sample) -> Score:
        """One side's credibility, with the checks behind it as parts."""
        metadata = side.metadata if isinstance(side.metadata, Mapping) else {}
        claim = metadata.get("answer") if isinstance(metadata.get("answer"), str) else after_prefix(side.response)
        documents = metadata.get("documents") if isinstance(metadata.get("documents"), str) else side.prompt
        quotes = [a or b for a, b in _QUOTE.findall(side.response)]
        quotes = [q for q in quotes if len(normalize_answer(q).split()) >= self.min_quote_tokens]
        true = [q for q in quotes if _contains(documents, q)]
        supported = bool(claim) and any(_contains(q, claim) for q in true)
        correct = bool(claim) and any(self._same(claim, ref) for ref in references(side))
        parts = {"quoted": float(bool(true)), "supported": float(supported), "verified": float(supported and correct)}
        fabricated = len(quotes) - len(true)
        value = sum(WEIGHTS[k] * v for k, v in parts.items()) - FABRICATED * fabricated
        details = {"claim": claim, "quotes": len(quotes), "fabricated": fabricated}
        return Score(max(0.0, value), parts, details=details)

    def _same(self, claim: str, reference: str) -> bool:
        return same_answer(claim, reference) or self.numbers(Sample(response=claim, reference=reference)).value == 1.0

    def compare(self, a: Sample | str, b: Sample | str) -> float:
        """P(a is better than b): 1, 0.5 or 0 by credibility, and values between when both are partly credible."""
        return self.compare_batch([(a, b)])[0].value

    def compare_batch(self, pairs: Sequence[tuple[Sample | str, Sample | str]]) -> list[Score]:
        scores = []
        for a, b in ((_as_response_sample(a, "a"), _as_response_sample(b, "b")) for a, b in pairs):
            if a == b:
                scores.append(IDENTICAL)
                continue
            ca, cb = self.credibility(a), self.credibility(b)
            preference = 0.5 + (ca.value - cb.value) / 2
            parts = {"preference": preference, **{f"a.{k}": v for k, v in ca.parts.items()}}
            parts.update({f"b.{k}": v for k, v in cb.parts.items()})
            scores.append(Score(preference, parts, details={"a": dict(ca.details), "b": dict(cb.details)}))
        return scores

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score] = []
        for s in samples:
            baseline: Any = s.metadata.get("baseline") if isinstance(s.metadata, Mapping) else None
            try:
                out.append(self.compare_batch([(s, _as_response_sample(baseline, "metadata['baseline']"))])[0])
            except TypeError as e:
                out.append(Score(0.0, {}, reason=f"no baseline to compare with: {e}"))
        return out
