"""A judge model's yes/no answer: P(yes) among the yes and no answer words, read from logits or top logprobs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Answer words whose first-token probability counts as "yes" / "no" (case and a leading space vary by tokenizer).
YES_WORDS = ("Yes", "yes", "YES")
NO_WORDS = ("No", "no", "NO")


@dataclass(frozen=True)
class Verdict:
    """A judge model's answer to one yes/no prompt: ``p_yes`` among the yes/no answers, ``mass`` = P(yes or no)."""

    p_yes: float
    mass: float = 1.0
    error: str = ""  # set when there is no verdict (an HTTP failure, no yes/no token among the top logprobs)
    truncated_tokens: int = 0  # prompt tokens cut from the left when even shortened fields did not fit


def verdict_from_top_logprobs(top: Mapping[str, float]) -> Verdict:
    """P(yes) among the yes/no tokens of one position's top logprobs (token text → logprob)."""
    yes = sum(math.exp(lp) for tok, lp in top.items() if _word(tok) in {w.lower() for w in YES_WORDS})
    no = sum(math.exp(lp) for tok, lp in top.items() if _word(tok) in {w.lower() for w in NO_WORDS})
    if yes + no <= 0:
        return Verdict(math.nan, 0.0, error="no Yes/No token among the top logprobs")
    return Verdict(yes / (yes + no), yes + no)


def _word(token: str) -> str:
    return token.strip().strip(".,:;!\"'").lower()
