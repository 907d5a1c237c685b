"""Answer extraction: find the final answer inside a free-form response before a verifier or judge reads it.

Extracting first is also a guard: a judge that only ever sees the extracted answer cannot be swayed by the
reasoning around it, and a response with no answer never reaches it (Master-RM's "master key" answers).

The extractors are plain functions ``text -> str | None`` (``None``: nothing found; never an empty string);
:class:`Extract` puts one in front of any reward.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import replace

from agentenv.errors import ConfigError, check_choice
from agentenv.rewards.base import Reward, Sample, Score, prefixed

# A number as written in answers: sign, thousands separators, decimals, a/b fractions, \frac{a}{b} and
# scientific notation (1e-3, 3 \times 10^{5}) and powers (2^{10}). Not inside a word (H2O) or after a decimal point.
NUMBER_PATTERN = r"""
    (?<![\w.^])
    [-+−]?
    (?:
        \\[dt]?frac\s*\{\s*[-+−]?\d+(?:\.\d+)?\s*\}\s*\{\s*\d+(?:\.\d+)?\s*\}
      | (?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?(?![\d/]))?
      | \.\d+
    )
    (?:
        [eE][-+]?\d+
      | \s*(?:×|\\times|\\cdot|\*|x)\s*10\s*(?:\^|\*\*)\s*(?:\{\s*[-+−]?\d+\s*\}|[-+−]?\d+)
      | \s*\^\s*(?:\{\s*[-+−]?\d+\s*\}|[-+−]?\d+)
    )?
"""
_NUMBER = re.compile(NUMBER_PATTERN + r"(?:\s*\\?%)?", re.VERBOSE)

#: Words that introduce a final answer, longest first.
ANSWER_PREFIXES = ("final answer", "answer")
_PREFIX = re.compile(
    r"\b(?:" + "|".join(ANSWER_PREFIXES) + r")\b[^\S\n]*(?:\*\*|__)?[^\S\n]*(?::|：|\bis\b)[^\S\n]*(?:\*\*|__)?"
    r"(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
_BOX = re.compile(r"\\(?:boxed|fbox)\b")


def has_content(text: str) -> bool:
    """Whether ``text`` holds a letter, a digit or a math symbol (``∞``), not just punctuation and spaces."""
    return any(c.isalnum() or (ord(c) > 127 and unicodedata.category(c) in ("Sm", "So")) for c in text)


def _answer(text: str | None) -> str | None:
    """Strip an extracted span; an empty or contentless one (``""``, ``"."``) is no answer."""
    if text is None:
        return None
    text = text.strip()
    return text if has_content(text) else None


def final_line(text: str) -> str | None:
    """The last non-empty line."""
    lines = [line for line in text.splitlines() if line.strip()]
    return _answer(lines[-1]) if lines else None


def last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``), nested braces included; ``\boxed 5`` too."""
    found = None
    for m in _BOX.finditer(text):
        i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            content = _braced(text, i)
            if content is not None:
                found = content
        elif i > m.end():
            found = re.match(r"[^\s$]*", text[i:]).group()  # \boxed 5
    return _answer(found)


def _braced(text: str, start: int) -> str | None:
    """The text inside the balanced braces opening at ``start``; ``None`` if they never close."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # \{ and \} are literal braces
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def tagged(text: str, tag: str = "answer") -> str | None:
    """The content of the last ``<tag>...</tag>`` block (case-insensitive)."""
    blocks = re.findall(rf"<{re.escape(tag)}(?:\s[^>]*)?>(.*?)</{re.escape(tag)}\s*>", text, re.IGNORECASE | re.DOTALL)
    return _answer(blocks[-1]) if blocks else None


def after_prefix(text: str) -> str | None:
    """What follows the last "Answer:" / "Final answer:" / "The answer is" (or the next line, if that is empty)."""
    matches = list(_PREFIX.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    rest = m.group("rest").strip()
    if not rest:
        rest = next((line for line in text[m.end() :].splitlines() if line.strip()), "")
    return _answer(rest.strip().lstrip(":：").strip().strip("*_").rstrip(".").strip())


def last_number(text: str) -> str | None:
    """The last number in the text as written (``"-1,234.5"``, ``"3/4"``, ``"50%"``, ``"6.02e23"``)."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].strip() if numbers else None


#: The extraction methods, by the name ``Extract(how=...)`` uses.
EXTRACTORS: dict[str, Callable[..., str | None]] = {
    "boxed": last_boxed,
    "tags": tagged,
    "prefix": after_prefix,
    "final_line": final_line,
    "last_number": last_number,
}
#: ``how="auto"``: the explicit markers first, the last line as the fallback.
AUTO = ("boxed", "tags", "prefix", "final_line")
EXTRACTION_METHODS = ("auto", *EXTRACTORS)


def extraction_order(how: str | Sequence[str]) -> tuple[str, ...]:
    """The methods ``how`` names, in the order they are tried; a :class:`ConfigError` for an unknown one."""
    names = [how] if isinstance(how, str) else list(how)
    if not names:
        raise ConfigError(f"how={how!r} names no extraction method; choose from {list(EXTRACTION_METHODS)}")
    order: list[str] = []
    for name in names:
        check_choice("how", name, EXTRACTION_METHODS)
        order.extend(AUTO if name == "auto" else [name])
    return tuple(order)


def extract_answer(text: str, how: str | Sequence[str] = "auto", *, tag: str = "answer") -> str | None:
    """The answer by the first method in ``how`` that finds one (a method name, ``"auto"``, or a sequence)."""
    for name in extraction_order(how):
        answer = EXTRACTORS[name](text, tag) if name == "tags" else EXTRACTORS[name](text)
        if answer is not None:
            return answer
    return None


def check_tag(tag: str) -> None:
    """Raise :class:`ConfigError` unless ``tag`` is a plain tag name (``answer``, ``tool_call``)."""
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z_][\w:.-]*", tag):
        raise ConfigError(f"tag={tag!r} must be a tag name such as 'answer' (letters, digits, _ : . -)")


class Extract(Reward):
    """Scores ``reward`` on the extracted answer: the sample with its response replaced by the answer.

    A response with no answer scores 0 ("no answer found") and never reaches ``reward``. Parts: ``extracted``
    (1/0) and the inner reward's under ``reward``. ``extract_reference=True`` extracts from the reference too
    (e.g. a MATH solution whose answer is boxed), keeping it whole when nothing is found there.
    """

    def __init__(
        self,
        reward: Reward,
        how: str | Sequence[str] = "auto",
        *,
        tag: str = "answer",
        extract_reference: bool = False,
    ):
        super().__init__()
        if not isinstance(reward, Reward):
            raise ConfigError(f"Extract: reward must be a Reward, got {type(reward).__name__}")
        self.order = extraction_order(how)
        check_tag(tag)
        self.reward = reward
        self.how, self.tag, self.extract_reference = how, tag, extract_reference

    def extract(self, text: str) -> str | None:
        return extract_answer(text, self.order, tag=self.tag)

    def score(self, sample: Sample) -> Score:
        return self.score_batch([sample])[0]

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        extracted: dict[int, Sample] = {}
        answers: dict[int, str] = {}
        for i, sample in enumerate(samples):
            answer = self.extract(sample.response)
            if answer is None:
                continue
            reference = sample.reference
            if self.extract_reference and reference:
                reference = self.extract(reference) or reference
            answers[i] = answer
            extracted[i] = replace(sample, response=answer, reference=reference)
        inner = dict(zip(extracted, self.reward.batch(list(extracted.values())), strict=True))
        out = []
        for i in range(len(samples)):
            if i not in inner:
                out.append(Score(0.0, {"extracted": 0.0}, reason="no answer found"))
                continue
            score = inner[i]
            parts = {"extracted": 1.0, **prefixed("reward", score)}
            out.append(Score(score.value, parts, reason=score.reason, details={**score.details, "answer": answers[i]}))
        return out

    def extra_repr(self) -> str:
        how = self.how if isinstance(self.how, str) else list(self.how)
        return f"how={how!r}" + (f", tag={self.tag!r}" if "tags" in self.order else "")


__all__ = [
    "ANSWER_PREFIXES",
    "AUTO",
    "EXTRACTION_METHODS",
    "EXTRACTORS",
    "NUMBER_PATTERN",
    "Extract",
    "after_prefix",
    "check_tag",
    "extract_answer",
    "extraction_order",
    "final_line",
    "has_content",
    "last_boxed",
    "last_number",
    "tagged",
]
