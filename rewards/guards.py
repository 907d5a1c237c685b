"""Rule-based guards against reward hacking: cheap checks that put in front of a judge (``Gate``, ``Sequential``).

LLM judges say "yes" to "master key" responses with no answer in them — ``":"``, ``"."``, ``"Solution"``,
``"Let's solve this problem step by step."`` (Master-RM) — and to responses that merely restate the question.
Each guard scores 1 (pass) or 0 (fail, with the reason), so ``Gate(DegenerateAnswer(), judge)`` never lets such
a response reach the judge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from agentenv.errors import ConfigError, check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.extract import check_tag, extract_answer, extraction_order, has_content
from agentenv.rewards.rules import STOPWORDS, answer_tokens, content_tokens, normalize_answer

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
    problem, we need to" fail. The reference answer itself always passes.
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
        why = _emptiness(text)
        if why:
            return Score(0.0, reason=why)
        words = _words(text)
        if len(words) >= self.max_repeats and len(set(words)) == 1:
            return Score(0.0, reason=f"one token repeated: {words[0][:40]!r} x{len(words)}")
        reference = sample.reference if isinstance(sample.reference, str) else ""
        if reference.strip() and normalize_answer(reference) == normalize_answer(text):
            return Score(1.0, reason="the response is the reference answer")  # even if that is "Solution"
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
    "NonEmptyAnswer",
    "ReferenceEcho",
]
