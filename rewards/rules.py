"""Rule verifiers: rewards computed from the response and a reference (or the env's test results) by rules.

They are cheap, deterministic and hard to fool, so they come first: as the reward itself where an answer can be
checked, and as gates in front of a judge where it cannot. Each scores the response as given; put
:class:`~agentenv.rewards.extract.Extract` in front to score only the final answer of a long response.

A sample with no reference (or no test results, no tool schemas) scores 0 with a reason; it never raises.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from agentenv.core import InvalidAction
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.extract import NUMBER_PATTERN, check_tag
from agentenv.tool_calls import json_schema_errors, parse_tool_calls, tool_schemas

#: How a verifier with several checks folds them into one value.
COMBINE = ("mean", "product")


def _combine(values: Iterable[float], how: str) -> float:
    values = list(values)
    if not values:
        return 0.0
    return sum(values) / len(values) if how == "mean" else math.prod(values)


def _metadata(sample: Sample) -> Mapping[str, Any]:
    return sample.metadata if isinstance(sample.metadata, Mapping) else {}


# ---- lexical normalisation (SQuAD) ------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)

_STOPWORDS = """
    a an the and or but if then so of to in on at by for with from as into onto about over under than that
    this these those is are was were be been being am do does did done has have had having it its he she
    they them their his her we us our you your i me my mine what which who whom whose when where why how
    there here not no nor can could will would shall should may might must just also very too such only own
    same other some any each every all both few more most much many
"""
#: English function words (normalised): not content. Shared by the lexical nugget matcher and the guards.
STOPWORDS = frozenset(_STOPWORDS.split())


def normalize_answer(text: str) -> str:
    """SQuAD's ``normalize_answer``, Unicode-aware: casefold, drop punctuation, articles and extra whitespace.

    Departures: a decimal point or fraction slash between digits stays (``3.5`` is not ``35``), and so does a
    minus sign before a number; invisible format characters (zero-width spaces) go; and a text made only of
    articles keeps them, so the choice "A" is not the empty answer.
    """
    text = unicodedata.normalize("NFKC", text).replace("−", "-").casefold()
    kept = []
    for i, ch in enumerate(text):
        if ch in _ASCII_PUNCTUATION or (unicodedata.category(ch)[0] in "PC" and not ch.isspace()):
            prev, nxt = text[i - 1 : i], text[i + 1 : i + 2]
            in_number = ch in "./" and prev.isdigit() and nxt.isdigit()
            minus = ch == "-" and nxt.isdigit() and not prev.isalnum()
            if not (in_number or minus):
                continue
        kept.append(ch)
    text = "".join(kept)
    return " ".join(_ARTICLES.sub(" ", text).split()) or " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The tokens of the normalised text (SQuAD's ``get_tokens``)."""
    return normalize_answer(text).split()


def content_tokens(text: str) -> list[str]:
    """The normalised tokens that are not :data:`STOPWORDS`."""
    return [t for t in answer_tokens(text) if t not in STOPWORDS]


def same_answer(response: str, reference: str) -> bool:
    """Whether ``response`` is ``reference`` after :func:`normalize_answer`. Answers that normalise to nothing
    (punctuation-only defaults such as ``''``, ``{}``, ``*``) must be equal as stripped text instead, so that such a
    reference is still an answer and ``":"`` is not it."""
    said, gold = normalize_answer(response), normalize_answer(reference)
    if said or gold:
        return said == gold
    return bool(reference.strip()) and response.strip() == reference.strip()


def references(sample: Sample, separator: str | None = None) -> list[str]:
    """The acceptable answers: ``metadata["references"]`` and the reference (split on ``separator``), deduplicated."""
    found: list[str] = []
    extra = _metadata(sample).get("references")
    if isinstance(extra, str):
        extra = [extra]
    if isinstance(extra, Iterable):
        found.extend(r for r in extra if isinstance(r, str))
    if isinstance(sample.reference, str):
        found.extend(sample.reference.split(separator) if separator else [sample.reference])
    return list(dict.fromkeys(r.strip() for r in found if r.strip()))


def _check_separator(separator: str | None) -> None:
    if separator is not None and (not isinstance(separator, str) or not separator):
        raise ConfigError(f"separator={separator!r} must be a non-empty string (e.g. '|') or None")


class ExactMatch(Reward):
    """1 when the response equals an acceptable reference after :func:`normalize_answer`, else 0.

    References: ``metadata["references"]`` and ``sample.reference`` (split on ``separator`` when given).
    ``normalize=False`` compares the stripped texts exactly. A reference of punctuation only (``''``, ``{}``) must
    be given as it is (:func:`same_answer`). For numbers use :class:`NumericMatch`.
    """

    def __init__(self, *, normalize: bool = True, separator: str | None = None):
        super().__init__()
        _check_separator(separator)
        self.normalize, self.separator = normalize, separator

    def _norm(self, text: str) -> str:
        return normalize_answer(text) if self.normalize else text.strip()

    def score(self, sample: Sample) -> Score:
        refs = references(sample, self.separator)
        if not refs:
            return Score(0.0, reason="no reference")
        answer = self._norm(sample.response)
        for ref in refs:
            same = same_answer(sample.response, ref) if self.normalize else ref.strip() == answer
            if same:
                return Score(1.0, details={"answer": answer, "matched": ref})
        if not answer:
            return Score(0.0, reason="empty answer")
        reason = f"{answer[:80]!r} matches none of {len(refs)} reference(s)"
        return Score(0.0, reason=reason, details={"answer": answer})

    def extra_repr(self) -> str:
        shown = [] if self.normalize else ["normalize=False"]
        return ", ".join(shown + ([f"separator={self.separator!r}"] if self.separator else []))


class TokenF1(Reward):
    """SQuAD token F1 between the response and the best-matching reference; parts ``precision`` and ``recall``."""

    def __init__(self, *, separator: str | None = None):
        super().__init__()
        _check_separator(separator)
        self.separator = separator

    def score(self, sample: Sample) -> Score:
        refs = references(sample, self.separator)
        if not refs:
            return Score(0.0, {"precision": 0.0, "recall": 0.0}, reason="no reference")
        answer = answer_tokens(sample.response)
        f1, precision, recall, ref = max(((*token_f1(answer, answer_tokens(r)), r) for r in refs), key=lambda t: t[0])
        reason = "" if f1 else ("empty answer" if not answer else "no token in common with the reference")
        return Score(f1, {"precision": precision, "recall": recall}, reason=reason, details={"reference": ref})

    def extra_repr(self) -> str:
        return f"separator={self.separator!r}" if self.separator else ""


def token_f1(answer: Sequence[str], reference: Sequence[str]) -> tuple[float, float, float]:
    """``(f1, precision, recall)`` of two token lists (counted with multiplicity, as in SQuAD)."""
    if not answer or not reference:
        same = float(list(answer) == list(reference))
        return same, same, same
    common = sum((Counter(answer) & Counter(reference)).values())
    if not common:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(answer), common / len(reference)
    return 2 * precision * recall / (precision + recall), precision, recall


# ---- numbers and units ------------------------------------------------------------------------------------

UNIT_MODES = ("ignore", "convert", "strict")


def _unit_table() -> dict[str, tuple[str, float]]:
    table: dict[str, tuple[str, float]] = {"%": ("fraction", 0.01), "percent": ("fraction", 0.01)}
    groups = {
        "length": {("km", "kilometer", "kilometre"): 1000.0, ("m", "meter", "metre"): 1.0,
                   ("cm", "centimeter", "centimetre"): 0.01, ("mm", "millimeter", "millimetre"): 0.001},
        "mass": {("kg", "kilogram"): 1000.0, ("g", "gram"): 1.0, ("mg", "milligram"): 0.001},
        "time": {("s", "sec", "second"): 1.0, ("min", "minute"): 60.0, ("h", "hr", "hour"): 3600.0,
                 ("d", "day"): 86400.0},
    }  # fmt: skip
    for dimension, units in groups.items():
        for names, factor in units.items():
            for name in names:
                table[name] = (dimension, factor)
                if len(name) > 2:
                    table[name + "s"] = (dimension, factor)
    return table


#: Unit name -> (dimension, factor to the dimension's base unit). Compound units (``km/h``) are derived.
UNITS: dict[str, tuple[str, float]] = _unit_table()
_PERCENT = UNITS["%"]
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")

_CURRENCY = re.compile(r"\\?[$€£¥₹₩₽¢]")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_SPACE = re.compile(r"\\[,;:!]|\\left|\\right|\{,\}")
_QUANTITY = re.compile(
    rf"(?P<number>{NUMBER_PATTERN})"
    r"(?:\s*(?P<unit>\\?%|[^\W\d_]+(?:\s*/\s*[^\W\d_]+)?)(?![^\W\d_]|\^))?",  # km^2 is no length
    re.VERBOSE,
)


class Quantity(NamedTuple):
    """A number with the unit written after it (``None``: none, or one not in the unit table)."""

    number: float
    unit: str | None = None


def parse_number(text: str) -> float | None:
    """The value of one number as :data:`~agentenv.rewards.extract.NUMBER_PATTERN` reads it; ``None`` if not one."""
    text = re.sub(r"\s+", "", text.replace("−", "-").replace(",", ""))
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    m = re.fullmatch(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}(.*)", text)
    if m:
        text = f"{m.group(1)}/{m.group(2)}{m.group(3)}"
    exponent, power = "0", "1"
    m = re.fullmatch(r"(.*?)(?:×|\\times|\\cdot|\*|x)10(?:\^|\*\*)\{?([-+]?\d+)\}?", text)
    if m:
        text, exponent = m.groups()
    m = re.fullmatch(r"(.*?)\^\{?([-+]?\d+)\}?", text)
    if m:
        text, power = m.groups()
    try:
        scale, power = 10.0 ** int(exponent), int(power)
        numerator, _, denominator = text.partition("/")
        value = float(numerator) / float(denominator) if denominator else float(numerator)
        value = sign * value**power * scale
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def _clean_math(text: str) -> str:
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+", lambda m: "^" + m.group().translate(_SUPERSCRIPTS), text)  # 10⁵ -> 10^5
    text = unicodedata.normalize("NFKC", text).replace("⁄", "/")
    text = _LATEX_TEXT.sub(r" \1", text)
    text = _LATEX_SPACE.sub("", text)
    return _CURRENCY.sub("", text)


def lookup_unit(unit: str | None, table: Mapping[str, tuple[str, float]] = UNITS) -> tuple[str, float] | None:
    """``(dimension, factor)`` of a unit, ``km/h`` composed from its parts; ``None`` for an unknown unit."""
    if not unit:
        return None
    unit = unit.strip().lstrip("\\")
    for name in (unit, unit.lower()):
        if name in table:
            return table[name]
    if "/" in unit:
        top, bottom = (lookup_unit(u, table) for u in unit.split("/", 1))
        if top and bottom:
            return f"{top[0]}/{bottom[0]}", top[1] / bottom[1]
    return None


def parse_quantity(text: str, table: Mapping[str, tuple[str, float]] = UNITS) -> Quantity | None:
    """The last quantity in ``text``: its number and known unit (currency symbols and LaTeX wrappers dropped)."""
    found = None
    for m in _QUANTITY.finditer(_clean_math(text)):
        number = parse_number(m.group("number"))
        if number is None:
            continue
        unit = m.group("unit")
        if unit and not lookup_unit(unit, table) and "/" in unit:
            unit = unit.split("/", 1)[0]
        found = Quantity(number, unit.strip().lstrip("\\") if unit and lookup_unit(unit, table) else None)
    return found


class NumericMatch(Reward):
    """1 when the response's number equals a reference number within tolerance (``math.isclose``), else 0.

    Reads ints, decimals, thousands separators, fractions (``3/4``, ``\\frac{3}{4}``), scientific notation,
    percentages and a unit after the number; currency symbols are dropped. A response that is not just a
    number is read by its last quantity. ``units``:

    * ``"ignore"`` — compare the numbers, whatever the units (``5 km`` = ``5 m``);
    * ``"convert"`` — convert known units of the same dimension (``1.5 km`` = ``1500 m``; ``km`` vs ``kg`` fails);
      a bare number is taken in the other side's unit;
    * ``"strict"`` — as ``convert``, but a unit on one side only fails.

    A percentage matches its number or its fraction (``50%`` = ``50`` = ``0.5``) except under ``strict``.
    ``extra_units`` adds ``{name: (dimension, factor)}`` entries to :data:`UNITS`.
    """

    def __init__(
        self,
        *,
        rel_tol: float = 1e-6,
        abs_tol: float = 1e-8,
        units: str = "convert",
        separator: str | None = None,
        extra_units: Mapping[str, tuple[str, float]] | None = None,
    ):
        super().__init__()
        check_range("rel_tol", rel_tol, 0.0)
        check_range("abs_tol", abs_tol, 0.0)
        check_choice("units", units, UNIT_MODES)
        _check_separator(separator)
        table = dict(UNITS)
        for name, entry in (extra_units or {}).items():
            ok = isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
            factor = entry[1] if ok else None
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
                raise ConfigError(f"extra_units[{name!r}]={entry!r} must be (dimension, positive finite factor)")
            table[name] = (entry[0], float(entry[1]))
        self.rel_tol, self.abs_tol, self.units, self.separator = float(rel_tol), float(abs_tol), units, separator
        self.table = table

    def _close(self, a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    def same(self, a: Quantity, b: Quantity) -> bool:
        """Whether two quantities are equal under this verifier's tolerance and unit policy."""
        ua, ub = lookup_unit(a.unit, self.table), lookup_unit(b.unit, self.table)
        if ua and ub and self.units != "ignore":
            return ua[0] == ub[0] and self._close(a.number * ua[1], b.number * ub[1])
        if (ua or ub) and self.units == "strict":
            return False
        # the numbers as written (a bare number read in the other side's unit), or a percentage as a fraction
        percent = [(q, other) for q, u, other in ((a, ua, b), (b, ub, a)) if u == _PERCENT and other.unit is None]
        return self._close(a.number, b.number) or any(self._close(q.number * 0.01, o.number) for q, o in percent)

    def score(self, sample: Sample) -> Score:
        refs = references(sample, self.separator)
        if not refs:
            return Score(0.0, reason="no reference")
        answer = parse_quantity(sample.response, self.table)
        if answer is None:
            return Score(0.0, reason="no number in the answer")
        gold = [(ref, q) for ref in refs if (q := parse_quantity(ref, self.table)) is not None]
        if not gold:
            return Score(0.0, reason=f"the reference is not a number: {refs[0][:80]!r}")
        details = {"answer": answer.number, "unit": answer.unit}
        for ref, q in gold:
            if self.same(answer, q):
                return Score(1.0, details={**details, "matched": ref})
        shown = f"{answer.number:g}{' ' + answer.unit if answer.unit else ''}"
        wanted = ", ".join(f"{q.number:g}{' ' + q.unit if q.unit else ''}" for _, q in gold[:3])
        return Score(0.0, reason=f"{shown} does not equal {wanted} (units={self.units})", details=details)

    def extra_repr(self) -> str:
        return f"rel_tol={self.rel_tol:g}, abs_tol={self.abs_tol:g}, units={self.units!r}"


# ---- patterns and format --------------------------------------------------------------------------------


class RegexMatch(Reward):
    """1 when ``pattern`` is found in the response (``full=True``: matches the whole stripped response), else 0."""

    def __init__(self, pattern: str | re.Pattern[str], *, full: bool = False, flags: int = 0):
        super().__init__()
        try:
            self.pattern = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        except (re.error, TypeError) as e:
            raise ConfigError(f"pattern={pattern!r} is not a valid regular expression: {e}") from e
        self.full = full

    def score(self, sample: Sample) -> Score:
        text = sample.response.strip() if self.full else sample.response
        m = self.pattern.fullmatch(text) if self.full else self.pattern.search(text)
        if m is None:
            how = "match the whole response" if self.full else "occur in the response"
            return Score(0.0, reason=f"pattern {self.pattern.pattern!r} does not {how}")
        return Score(1.0, details={"match": m.group()[:200], "span": m.span()})

    def extra_repr(self) -> str:
        return f"{self.pattern.pattern!r}" + (", full=True" if self.full else "")


class FormatCheck(Reward):
    """Format rules of a response, each a part (1/0) folded by ``combine`` (``"product"``: all must hold).

    ``tags``: each ``<tag>...</tag>`` pair occurs exactly once (``ordered=True``: in the given order);
    ``max_chars``: the response is at most this long; ``non_empty``: it has content beyond whitespace.
    """

    def __init__(
        self,
        tags: Sequence[str] = (),
        *,
        max_chars: int | None = None,
        non_empty: bool = True,
        ordered: bool = False,
        combine: str = "product",
    ):
        super().__init__()
        tags = [tags] if isinstance(tags, str) else list(tags)
        for tag in tags:
            check_tag(tag)
        if max_chars is not None:
            check_range("max_chars", max_chars, 1, integer=True)
        check_choice("combine", combine, COMBINE)
        if not tags and max_chars is None and not non_empty:
            raise ConfigError("FormatCheck checks nothing: give tags, max_chars or non_empty=True")
        self.tags, self.max_chars, self.non_empty = tuple(tags), max_chars, non_empty
        self.ordered, self.combine = ordered, combine

    def score(self, sample: Sample) -> Score:
        text = sample.response
        parts: dict[str, float] = {}
        failures: list[str] = []
        if self.non_empty:
            parts["non_empty"] = float(bool(text.strip()))
            if not text.strip():
                failures.append("empty response")
        if self.max_chars is not None:
            parts["max_chars"] = float(len(text) <= self.max_chars)
            if len(text) > self.max_chars:
                failures.append(f"{len(text)} characters > max_chars={self.max_chars}")
        starts: list[int] = []
        for tag in self.tags:
            opens = [m.start() for m in re.finditer(rf"<{re.escape(tag)}(?:\s[^>]*)?>", text, re.IGNORECASE)]
            closes = [m.start() for m in re.finditer(rf"</{re.escape(tag)}\s*>", text, re.IGNORECASE)]
            ok = len(opens) == 1 and len(closes) == 1 and opens[0] < closes[0]
            parts[f"tag.{tag}"] = float(ok)
            if ok:
                starts.append(opens[0])
            else:
                failures.append(f"<{tag}>...</{tag}> must appear once: found {len(opens)} open, {len(closes)} close")
        if self.ordered and len(self.tags) > 1:
            in_order = len(starts) == len(self.tags) and starts == sorted(starts)
            parts["order"] = float(in_order)
            if not in_order:
                failures.append(f"tags must appear in the order {list(self.tags)}")
        return Score(_combine(parts.values(), self.combine), parts, reason="; ".join(failures))

    def extra_repr(self) -> str:
        return f"tags={list(self.tags)}, max_chars={self.max_chars}, combine={self.combine!r}"


# ---- tests (SWE) ----------------------------------------------------------------------------------------

#: Test statuses that count as passing (SWE-bench counts an expected failure, XFAIL, as passing).
PASSING_STATUSES = frozenset({"passed", "pass", "ok", "success", "xfail"})
_COUNT_KEYS = frozenset({"failed", "fail", "failures", "error", "errors", "skipped", "xpass", "total"})
TEST_MODES = ("ratio", "binary")


def _test_list(value: Any) -> list[str] | None:
    """A FAIL_TO_PASS / PASS_TO_PASS list, also as the JSON string SWE-bench stores."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


class TestPassRatio(Reward):
    """The fraction of tests that pass, from the env's results in ``metadata["tests"]``.

    ``tests`` maps test name -> status (``"passed"``, ``"failed"``, ``"error"``, ...; or a bool), or holds counts
    by status (``{"passed": 3, "failed": 1}``, optionally ``"total"``). When ``metadata`` lists ``FAIL_TO_PASS`` /
    ``PASS_TO_PASS`` (SWE-bench), only those tests count, a missing one as failed, and each list's ratio is a part.
    ``mode="binary"``: 1 only if all pass (SWE-bench's "resolved").
    """

    __test__ = False  # not a pytest test class

    def __init__(self, mode: str = "ratio", *, passing: Iterable[str] = PASSING_STATUSES):
        super().__init__()
        check_choice("mode", mode, TEST_MODES)
        self.mode = mode
        self.passing = frozenset(s.lower() for s in passing)

    def _passed(self, status: Any) -> bool:
        if isinstance(status, bool):
            return status
        return isinstance(status, str) and status.strip().lower() in self.passing

    def score(self, sample: Sample) -> Score:
        meta = _metadata(sample)
        tests = meta.get("tests")
        if not isinstance(tests, Mapping) or not tests:
            return Score(0.0, reason="no test results in metadata['tests']")
        lists = {
            key.lower(): found
            for key in ("FAIL_TO_PASS", "PASS_TO_PASS", "fail_to_pass", "pass_to_pass")
            if key in meta and (found := _test_list(meta[key])) is not None
        }
        counts = all(
            isinstance(v, int) and not isinstance(v, bool) and str(k).lower() in self.passing | _COUNT_KEYS
            for k, v in tests.items()
        )
        parts: dict[str, float] = {}
        if counts:
            passed = sum(max(v, 0) for k, v in tests.items() if self._passed(str(k)))
            total = max(tests.get("total", sum(max(v, 0) for k, v in tests.items() if k != "total")), passed)
            note = "; FAIL_TO_PASS/PASS_TO_PASS ignored: results are counts, not per test" if lists else ""
        elif any(lists.values()):
            total = passed = 0
            for part, names in lists.items():
                ok = sum(self._passed(tests.get(name)) for name in names)
                parts[part] = ok / len(names) if names else 1.0
                total, passed = total + len(names), passed + ok
            note = ""
        else:
            total, passed, note = len(tests), sum(self._passed(v) for v in tests.values()), ""
        if not total:
            return Score(0.0, parts, reason="no tests ran" + note)
        ratio = passed / total
        value = ratio if self.mode == "ratio" else float(passed == total)
        reason = "" if passed == total else f"{passed}/{total} tests passed"
        return Score(value, {**parts, "ratio": ratio}, reason=reason + note, details={"passed": passed, "total": total})

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


# ---- tool calls (ToolRL) -----------------------------------------------------------------------------------
# Reading and schema-checking calls is shared with the runners and envs: agentenv.tool_calls.


class ToolCallValidity(Reward):
    """ToolRL-style validity of the tool calls in a turn, against the schemas in ``metadata["tools"]``.

    Parts, each the fraction of calls that pass: ``format`` (parses as a call with a name and an arguments
    object), ``name`` (a known tool), ``arguments`` (required present, types and enums right, see
    :func:`json_schema_errors`). The value is their ``combine`` (``"mean"`` or ``"product"``). Calls come from
    ``metadata["tool_calls"]`` or the response (:func:`parse_tool_calls`); a turn with none scores 0.
    """

    def __init__(self, *, combine: str = "mean"):
        super().__init__()
        check_choice("combine", combine, COMBINE)
        self.combine = combine

    def score(self, sample: Sample) -> Score:
        meta = _metadata(sample)
        schemas = tool_schemas(meta.get("tools"))
        zero = {"format": 0.0, "name": 0.0, "arguments": 0.0}
        if not schemas:
            return Score(0.0, zero, reason="no tool schemas in metadata['tools']")
        calls = parse_tool_calls(sample.response, meta)
        if not calls:
            return Score(0.0, zero, reason="no tool call found")
        formats, names, arguments, errors = [], [], [], []
        for i, call in enumerate(calls):
            if isinstance(call, InvalidAction):
                formats += [0.0]
                names += [0.0]
                arguments += [0.0]
                errors.append(f"call {i}: {call.reason}")
                continue
            formats.append(1.0)
            known = call.name in schemas
            names.append(float(known))
            problems = json_schema_errors(call.arguments, schemas[call.name]) if known else ["unknown tool"]
            arguments.append(float(not problems))
            errors += [f"call {i} ({call.name}): {p}" for p in problems]
        parts = {
            "format": sum(formats) / len(calls),
            "name": sum(names) / len(calls),
            "arguments": sum(arguments) / len(calls),
        }
        value = _combine(parts.values(), self.combine)
        return Score(value, parts, reason="; ".join(errors[:5]), details={"errors": errors})

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}"


__all__ = [
    "COMBINE",
    "PASSING_STATUSES",
    "STOPWORDS",
    "UNITS",
    "UNIT_MODES",
    "ExactMatch",
    "FormatCheck",
    "NumericMatch",
    "Quantity",
    "RegexMatch",
    "TestPassRatio",
    "TokenF1",
    "ToolCallValidity",
    "answer_tokens",
    "content_tokens",
    "json_schema_errors",
    "lookup_unit",
    "normalize_answer",
    "parse_number",
    "parse_quantity",
    "parse_tool_calls",
    "references",
    "same_answer",
    "token_f1",
    "tool_schemas",
]
