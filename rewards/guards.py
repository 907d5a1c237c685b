"""Rule-based guards against reward hacking: cheap checks that put in front of a judge (``Gate``, ``Sequential``).

LLM judges say "yes" to "master key" responses with no answer in them — ``":"``, ``"."``, ``"Solution"``,
``"Let's solve this problem step by step."`` (Master-RM) — and to responses that merely restate the question.
Each guard scores 1 (pass) or 0 (fail, with the reason), so ``Gate(DegenerateAnswer(), judge)`` never lets such
a response reach the judge.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from agentenv.errors import ConfigError, check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.extract import check_tag, extract_answer, extraction_order, has_content
from agentenv.rewards.rules import STOPWORDS, answer_tokens, content_tokens, references, same_answer

#: Reasoning openers and answer labels that carry no answer by themselves (Master-RM's master keys and kin,
#: several languages). Matched case-insensitively as whole phrases, with trailing punctuation.
OPENERS = (
    r"let(?:[’']?s| me| us) (?:solve|think(?: about)?|work(?: through| out)?|tackle|approach|break down|figure out"
    r"|see|analy[sz]e|consider|start|begin|look at|read|understand)"
    r"(?: (?:this|the|it|our))?(?: (?:problem|question|task))?(?: carefully)?(?: step[- ]by[- ]step)?",
    r"(?:okay|ok|alright|sure|well|hmm+|so)",
    r"step[- ]by[- ]step(?: solution)?",
    r"step \d+",
    r"(?:my |the )?(?:thought process|thinking|reasoning|analysis|explanation|work|solution|answer|final answer"
    r"|response|result|conclusion)(?: is)?",
    r"to (?:solve|answer) this(?: problem| question)?",
    r"first(?:ly)?",
    r"here(?:'s| is) (?:the|my) (?:solution|answer|reasoning)",
    # other languages: solution / answer / explanation
    r"解|解答|答案|答|解析|思路|かいせつ|解説|答え|정답|풀이|해설|respuesta|soluci[oó]n|r[eé]ponse"
    r"|l[oö]sung|antwort|risposta|soluzione|resposta|solu[cç][aã]o|ответ|решение",
)
#: Words about solving rather than answers: not content in a response unless the reference uses them.
FILLER = frozenset(
    {
        "problem", "problems", "question", "questions", "task", "step", "steps", "solve", "solving", "solution",
        "think", "thinking", "thought", "thoughts", "process", "answer", "answers", "final", "finally", "let",
        "lets", "need", "needs", "analyze", "analyse", "analysis", "first", "firstly", "approach", "reasoning",
        "carefully", "explanation", "calculate", "compute", "determine", "figure", "consider", "okay", "ok",
        "alright", "hmm", "therefore", "thus", "hence", "response", "result", "conclusion",
    }
)  # fmt: skip
#: Stopwords that are answers on their own ("No", "Both", "The same"): content for the degenerate check.
ANSWER_STOPWORDS = frozenset({"no", "not", "nor", "all", "both", "each", "every", "any", "some", "few", "more", "most",
                              "much", "many", "same", "other", "only"})  # fmt: skip
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _emptiness(text: str) -> str | None:
    """Why ``text`` has no content at all, or None when it has some."""
    if not text.strip():
        return "empty response"
    if not has_content(text):
        return "only punctuation or symbols"
    return None


class NonEmptyAnswer(Reward):
    """Passes a response with content: fails an empty one, whitespace only, or punctuation and symbols only."""

    def score(self, sample: Sample) -> Score:
        why = _emptiness(sample.response)
        return Score(0.0, reason=why) if why else Score(1.0)


class DegenerateAnswer(Reward):
    """Passes unless the response is degenerate: empty, punctuation only, one token repeated, or nothing beyond
    reasoning openers ("Let's solve this problem step by step.", "Solution", "Thought process:", "解").

    After :data:`OPENERS` are removed, the rest must hold ``min_content_tokens`` content words: not stopwords,
    not :data:`FILLER` words unless the reference has them; numbers, a lone choice letter ("B") and
    :data:`ANSWER_STOPWORDS` ("No", "Both") count. So "42" passes, and "The answer is" and "To solve this
    problem, we need to" fail. The reference answer itself (or one in ``metadata["references"]``) always passes,
    even when it is punctuation (a default value ``''``): that check comes first.
    """

    def __init__(
        self,
        *,
        min_content_tokens: int = 1,
        max_repeats: int = 3,
        openers: Sequence[str] = OPENERS,
        filler: Iterable[str] = FILLER,
    ):
        super().__init__()
        check_range("min_content_tokens", min_content_tokens, 1, integer=True)
        check_range("max_repeats", max_repeats, 2, integer=True)
        try:
            self._openers = re.compile(r"(?<!\w)(?:" + "|".join(openers) + r")(?!\w)[\W_]*", re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"openers: not valid regular expressions: {e}") from e
        self.min_content_tokens, self.max_repeats = min_content_tokens, max_repeats
        self.filler = frozenset(filler)

    def score(self, sample: Sample) -> Score:
        text = sample.response
        if any(same_answer(text, r) for r in references(sample)):
            return Score(1.0, reason="the response is the reference answer")  # even if that is "Solution" or "''"
        why = _emptiness(text)
        if why:
            return Score(0.0, reason=why)
        words = _words(text)
        if len(words) >= self.max_repeats and len(set(words)) == 1:
            return Score(0.0, reason=f"one token repeated: {words[0][:40]!r} x{len(words)}")
        reference = sample.reference if isinstance(sample.reference, str) else ""
        rest = self._openers.sub(" ", text)
        answer = set(content_tokens(reference))
        tokens = [
            t
            for t in answer_tokens(rest)
            if (t not in STOPWORDS or t in ANSWER_STOPWORDS) and (t not in self.filler or t in answer)
        ]
        rest_words = _words(rest)
        if not tokens and len(rest_words) == 1 and len(rest_words[0]) == 1:
            tokens = rest_words  # a bare choice letter ("A") is an answer, though "a" is a stopword
        if len(tokens) < self.min_content_tokens:
            why = "nothing beyond reasoning openers" if rest.strip() != text.strip() else "too few content words"
            return Score(0.0, reason=f"{why}: {text.strip()[:60]!r}", details={"content_tokens": len(tokens)})
        return Score(1.0, details={"content_tokens": len(tokens)})

    def extra_repr(self) -> str:
        return f"min_content_tokens={self.min_content_tokens}"


class ReferenceEcho(Reward):
    """Fails a response that mostly restates the question: at least ``threshold`` of its content words (counted
    with repetition) come from the prompt.

    Passes, as no echo: a response that contains every content word of the reference answer ("The day after
    Monday is Tuesday."), and one with fewer than ``min_tokens`` content words (a short answer may well be one of
    the prompt's words, as in a multiple-choice question). The prompt is ``sample.prompt``, else the user turns
    of ``sample.messages``. Part: ``echo``, the share of echoed words.
    """

    def __init__(self, *, threshold: float = 0.8, min_tokens: int = 3):
        super().__init__()
        check_range("threshold", threshold, 0.0, 1.0)
        check_range("min_tokens", min_tokens, 1, integer=True)
        self.threshold, self.min_tokens = float(threshold), min_tokens

    @staticmethod
    def prompt_of(sample: Sample) -> str:
        if sample.prompt and sample.prompt.strip():
            return sample.prompt
        turns = [m.get("content") for m in sample.messages if isinstance(m, dict) and m.get("role") == "user"]
        return "\n".join(t for t in turns if isinstance(t, str))

    def score(self, sample: Sample) -> Score:
        prompt = self.prompt_of(sample)
        if not prompt.strip():
            return Score(1.0, {"echo": 0.0}, reason="no prompt to compare with")
        tokens = content_tokens(sample.response)
        answer = set(content_tokens(sample.reference)) if isinstance(sample.reference, str) else set()
        if answer and answer <= set(tokens):
            return Score(1.0, {"echo": 0.0}, reason="the response contains the reference answer")
        if len(tokens) < self.min_tokens:
            return Score(1.0, {"echo": 0.0})
        prompt_words = set(content_tokens(prompt))
        echo = sum(t in prompt_words for t in tokens) / len(tokens)
        if echo >= self.threshold:
            return Score(0.0, {"echo": echo}, reason=f"{echo:.0%} of the response's content words restate the prompt")
        return Score(1.0, {"echo": echo})

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}, min_tokens={self.min_tokens}"


#: Where a short answer splits into alternatives: commas (not inside a number), semicolons, slashes, bars, "&",
#: line breaks and the words "or", "and", "nor".
_ALTERNATIVES = re.compile(r"(?<!\d),|,(?!\d)|[;|&\n]|(?<!\d)/|/(?!\d)|\b(?:or|and|nor)\b", re.IGNORECASE)


def alternatives(text: str) -> list[str]:
    """The alternatives ``text`` offers as an answer: its pieces between :data:`_ALTERNATIVES` that carry content
    ("Kael Drovik or Mara Lind" -> 2, "A, B and C" -> 3, "12,340" -> 1)."""
    return [p.strip() for p in _ALTERNATIVES.split(text) if has_content(p)]


class HedgedAnswer(Reward):
    """Fails a response that offers more alternatives than the reference has items: "A or B or C", "A, B, C, D",
    one per line. Under token F1 or item F1 such a hedge collects credit for guessing; this guard makes it cost.

    The reference's item count ``n`` is ``len(metadata["items"])`` (a list answer), else the most
    :func:`alternatives` of any accepted reference (``"March 3, 1950"`` is 2). A response may offer ``n +
    floor(slack * n)`` of them: exactly one for a single answer, 3 for a list of 2, 7 for a list of 5. A response
    that is an accepted reference always passes. Part: ``alternatives``.
    """

    def __init__(self, *, slack: float = 0.5):
        super().__init__()
        check_range("slack", slack, 0.0, 10.0)
        self.slack = float(slack)

    def allowed(self, sample: Sample) -> int:
        """How many alternatives ``sample``'s response may offer."""
        items = sample.metadata.get("items") if isinstance(sample.metadata, Mapping) else None
        if isinstance(items, (list, tuple)) and any(isinstance(i, str) and i.strip() for i in items):
            n = sum(isinstance(i, str) and bool(i.strip()) for i in items)
        else:
            n = max((len(alternatives(r)) for r in references(sample)), default=1) or 1
        return n + math.floor(self.slack * n)

    def score(self, sample: Sample) -> Score:
        refs = references(sample)
        if any(same_answer(sample.response, r) for r in refs):
            return Score(1.0, {"alternatives": 1.0}, reason="the response is the reference answer")
        offered, allowed = len(alternatives(sample.response)), self.allowed(sample)
        if offered > allowed:
            why = f"hedged: {offered} alternatives where the reference has room for {allowed}"
            return Score(0.0, {"alternatives": float(offered)}, reason=why)
        return Score(1.0, {"alternatives": float(offered)})

    def extra_repr(self) -> str:
        return f"slack={self.slack:g}"


def length_factor(response: str, reference: str, max_ratio: float, min_chars: int = 64) -> float:
    """1 for a response up to ``max(max_ratio * len(reference), min_chars)`` characters (stripped), then
    ``(allowed / length) ** 2``: no credit for length beyond the reference's (twice the allowance keeps a quarter,
    ten times 1%). Squared so that padding to an action limit of a few thousand characters leaves nothing."""
    allowed = max(max_ratio * len(reference.strip()), float(min_chars))
    length = len(response.strip())
    return 1.0 if length <= allowed else (allowed / length) ** 2


class PaddedAnswer(Reward):
    """Scores :func:`length_factor` of the response against the longest accepted reference: 1 up to
    ``max_ratio`` times its length (at least ``min_chars``), then falling with the square of the excess. As a gate
    (threshold 0.5) it stops an answer followed by padding, which normalisation would otherwise strip or ignore
    (``"Paris" + "." * 4000`` is ``"paris"``). Without a reference it passes. Part: ``length``.
    """

    def __init__(self, *, max_ratio: float = 4.0, min_chars: int = 64):
        super().__init__()
        check_range("max_ratio", max_ratio, 1.0)
        check_range("min_chars", min_chars, 1, integer=True)
        self.max_ratio, self.min_chars = float(max_ratio), min_chars

    def score(self, sample: Sample) -> Score:
        refs = references(sample)
        if not refs:
            return Score(1.0, {"length": 1.0}, reason="no reference to compare the length with")
        longest = max(refs, key=len)
        factor = length_factor(sample.response, longest, self.max_ratio, self.min_chars)
        if factor == 1.0:
            return Score(1.0, {"length": 1.0})
        why = f"padded: {len(sample.response.strip())} characters where the reference has {len(longest.strip())}"
        return Score(factor, {"length": factor}, reason=why)

    def extra_repr(self) -> str:
        return f"max_ratio={self.max_ratio:g}, min_chars={self.min_chars}"


#: ``AnswerPresent``'s default: an explicitly marked answer; the last line does not count.
MARKED = ("boxed", "tags", "prefix")


class AnswerPresent(Reward):
    """Passes when an extractor finds an answer with content (see :mod:`agentenv.rewards.extract`).

    By default only a marked answer counts (``\\boxed{}``, ``<answer>`` tags, "Answer: ..."), so "Answer:" alone
    or ``\\boxed{}`` fails; ``how="auto"`` also accepts the last line.
    """

    def __init__(self, how: str | Sequence[str] = MARKED, *, tag: str = "answer"):
        super().__init__()
        self.order = extraction_order(how)
        check_tag(tag)
        self.how, self.tag = how, tag

    def score(self, sample: Sample) -> Score:
        answer = extract_answer(sample.response, self.order, tag=self.tag)
        if answer is None:
            return Score(0.0, reason=f"no answer found (looked for: {', '.join(self.order)})")
        return Score(1.0, details={"answer": answer})

    def extra_repr(self) -> str:
        return f"how={self.how if isinstance(self.how, str) else list(self.how)!r}"


__all__ = [
    "ANSWER_STOPWORDS",
    "FILLER",
    "MARKED",
    "OPENERS",
    "AnswerPresent",
    "DegenerateAnswer",
    "HedgedAnswer",
    "NonEmptyAnswer",
    "PaddedAnswer",
    "ReferenceEcho",
    "alternatives",
    "length_factor",
]
