"""Anti-hacking checks for LLM judges: master-key probes, audits of false positives and negatives, guards in front
of a judge, and a monitor that compares a training judge with a gold verifier.

"Master keys" (Zhao et al. 2025, "One Token to Fool LLM-as-a-Judge", arXiv:2507.08794) are responses with no
answer in them — ``":"``, ``" "``, ``"Thought process:"``, ``"解"`` — that reference-based LLM judges still often
call correct. A policy trained against such a judge learns to emit them. :func:`audit` measures how often a judge
falls for them (false-positive rate) and how often it rejects correct answers in varied formats (false-negative
rate); :func:`guarded` is the recommended composition that keeps answerless responses away from the judge.
"""

from __future__ import annotations

import codecs
import collections
import importlib
import inspect
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from agentenv.errors import ConfigError, check_range
from agentenv.policy import MODEL_KINDS, parse_backend
from agentenv.rewards.base import Reward, Sample, Score, Sequential

log = logging.getLogger(__name__)

PROBES_PATH = Path(__file__).with_name("data") / "master_keys.yaml"

#: Judges ``agentenv judge-audit --judge NAME`` knows by name: (module, attribute), built with no arguments.
JUDGES = {
    "pointwise": ("agentenv.rewards.judges", "PointwiseJudge"),
    "exact": ("agentenv.rewards.rules", "ExactMatch"),
}


# ---- the probe set ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A master-key response: it answers nothing, so every judge should reject it."""

    response: str
    category: str  # non_word_symbol | reasoning_opener | multilingual
    source: str  # "paper": listed by Master-RM; "variant": another member of the same category


@dataclass(frozen=True)
class Question:
    """A question with its reference answer and correct responses to it in varied formats, as (format, text)."""

    id: str
    question: str
    reference: str
    answers: tuple[tuple[str, str], ...] = ()


@cache
def _probe_file() -> dict[str, Any]:
    return yaml.safe_load(PROBES_PATH.read_text(encoding="utf-8"))


def load_probes() -> list[Probe]:
    """The built-in master-key responses (``rewards/data/master_keys.yaml``)."""
    return [Probe(**p) for p in _probe_file()["probes"]]


def load_questions() -> list[Question]:
    """The built-in questions, each with a reference and correct answers in several formats."""
    return [
        Question(q["id"], q["question"], str(q["reference"]), tuple((a["format"], a["response"]) for a in q["answers"]))
        for q in _probe_file()["questions"]
    ]


def load_judge_pairs() -> list[tuple[str, str, str, str]]:
    """Easy ``(question, reference, correct answer, clearly wrong answer)`` pairs: a judge that is worth using
    scores the correct answer higher on aggregate (``rewards/data/judge_pairs.yaml``)."""
    raw = yaml.safe_load(PROBES_PATH.with_name("judge_pairs.yaml").read_text(encoding="utf-8"))
    return [(str(p["question"]), str(p["reference"]), str(p["correct"]), str(p["wrong"])) for p in raw]


# ---- audit cases --------------------------------------------------------------------------------------------


class AuditCase(BaseModel):
    """One labelled judgement: should a judge accept ``response`` to ``question`` given ``reference``?

    ``category`` groups cases in the report (``attack`` is used when it is missing); ``attack`` names the
    specific manipulation, e.g. the master key used.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    question: str
    reference: str
    response: str
    label: int
    category: str = ""
    attack: str = ""
    id: str = ""

    @field_validator("label", mode="before")
    @classmethod
    def _label_is_0_or_1(cls, value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return int(value)
        raise ValueError(f"must be 1 (correct) or 0 (incorrect), got {value!r}")

    @property
    def group(self) -> str:
        return self.category or self.attack

    def sample(self) -> Sample:
        return Sample(response=self.response, prompt=self.question, reference=self.reference)


def master_key_cases(
    questions: Iterable[Question | Mapping[str, Any]], probes: Iterable[Probe] = ()
) -> list[AuditCase]:
    """Every probe as the response to every question (label 0). ``probes`` defaults to :func:`load_probes`."""
    probes = list(probes) or load_probes()
    cases = []
    for i, q in enumerate(questions):
        q = _as_question(q, i)
        cases += [
            AuditCase(question=q.question, reference=q.reference, response=p.response, label=0,
                      category=p.category, attack=repr(p.response), id=f"{q.id}/probe-{k}")
            for k, p in enumerate(probes)
        ]  # fmt: skip
    return cases


def correct_answer_cases(questions: Iterable[Question]) -> list[AuditCase]:
    """The questions' correct answers (label 1), one category per answer format, e.g. ``correct:boxed``."""
    return [
        AuditCase(question=q.question, reference=q.reference, response=text, label=1, category=f"correct:{fmt}",
                  id=f"{q.id}/{fmt}")
        for q in questions
        for fmt, text in q.answers
    ]  # fmt: skip


def default_cases() -> list[AuditCase]:
    """Built-in probes crossed with the built-in questions, plus the questions' correct answers."""
    questions = load_questions()
    return master_key_cases(questions) + correct_answer_cases(questions)


def _as_question(q: Question | Mapping[str, Any], i: int) -> Question:
    if isinstance(q, Question):
        return q
    try:
        return Question(str(q.get("id", i)), q["question"], str(q["reference"]))
    except (KeyError, AttributeError, TypeError) as e:
        raise ConfigError(f"question {i} must have 'question' and 'reference' fields, got {q!r}") from e


def spread(cases: Sequence[AuditCase], limit: int | None) -> list[AuditCase]:
    """At most ``limit`` cases taken round-robin over groups, so a small limit still covers every category."""
    if limit is None or limit >= len(cases):
        return list(cases)
    queues = collections.defaultdict(collections.deque)
    for case in cases:
        queues[case.group].append(case)
    out: list[AuditCase] = []
    while len(out) < limit:
        for queue in queues.values():
            if queue and len(out) < limit:
                out.append(queue.popleft())
    return out


@dataclass(frozen=True)
class LoadedCases:
    """Cases read from a JSONL file, and the lines skipped with the reason for each (``(line number, why)``)."""

    cases: list[AuditCase]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def load_cases(path: str | Path) -> LoadedCases:
    """Read labelled cases from JSONL (``question``, ``reference``, ``response``, ``label`` 1/0, optional
    ``category``/``attack``/``id``). Bad lines are skipped and listed with their line number and field; a file
    that cannot be read or has no valid case raises :class:`ConfigError`. Callers report ``skipped``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read cases file {str(path)!r}: {e.strerror or e}") from e
    cases, skipped = [], []
    for number, line in enumerate(raw.removeprefix(codecs.BOM_UTF8).splitlines(), start=1):
        if not line.strip():
            continue
        case = _parse_line(line)
        if isinstance(case, AuditCase):
            cases.append(case if case.id else case.model_copy(update={"id": f"line {number}"}))
        else:
            skipped.append((number, case))
    if not cases:
        shown = "; ".join(f"line {n}: {why}" for n, why in skipped[:5]) or "the file is empty"
        more = f" (and {len(skipped) - 5} more bad lines)" if len(skipped) > 5 else ""
        raise ConfigError(
            f"cases file {str(path)!r} has no valid case: {shown}{more}. Each line must be a JSON object with "
            "'question', 'reference', 'response' (strings) and 'label' (1 or 0)."
        )
    return LoadedCases(cases, skipped)


def _parse_line(line: bytes) -> AuditCase | str:
    """The case on one JSONL line, or why it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte {e.start})"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} (column {e.colno})"
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    try:
        return AuditCase.model_validate(record)
    except ValidationError as e:
        return "; ".join(_field_error(err) for err in e.errors())


def _field_error(err: Mapping[str, Any]) -> str:
    name = ".".join(str(x) for x in err["loc"]) or "line"
    if err["type"] == "missing":
        return f"field {name!r} is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"].endswith("_type"):
        msg += f", got {type(err['input']).__name__}"
    return f"field {name!r}: {msg}"


# ---- the audit ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRates:
    """Confusion counts of a judge at a threshold; rates are NaN where their denominator is 0."""

    cases: int = 0
    negatives: int = 0  # label 0: should be rejected
    positives: int = 0  # label 1: should be accepted
    false_positives: int = 0  # label 0 scored >= threshold
    false_negatives: int = 0  # label 1 scored < threshold
    mean_negative_score: float = math.nan
    mean_positive_score: float = math.nan

    @property
    def fpr(self) -> float:
        return self.false_positives / self.negatives if self.negatives else math.nan

    @property
    def fnr(self) -> float:
        return self.false_negatives / self.positives if self.positives else math.nan

    @classmethod
    def of(cls, results: Sequence[CaseResult], threshold: float) -> ErrorRates:
        neg = [r.score for r in results if r.case.label == 0]
        pos = [r.score for r in results if r.case.label == 1]
        return cls(
            cases=len(results), negatives=len(neg), positives=len(pos),
            false_positives=sum(s >= threshold for s in neg), false_negatives=sum(s < threshold for s in pos),
            mean_negative_score=sum(neg) / len(neg) if neg else math.nan,
            mean_positive_score=sum(pos) / len(pos) if pos else math.nan,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({**asdict(self), "fpr": self.fpr, "fnr": self.fnr})


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (the probability a random positive outscores a random negative; ties count half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += mid_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


@dataclass(frozen=True)
class CaseResult:
    case: AuditCase
    score: float
    reason: str = ""

    def wrong(self, threshold: float) -> bool:
        return (self.score >= threshold) != bool(self.case.label)

    def to_dict(self) -> dict[str, Any]:
        return {**self.case.model_dump(), "score": _json_safe(self.score), "reason": self.reason}


@dataclass(frozen=True)
class AuditReport:
    """False-positive and false-negative rates of a judge, overall, per category and per attack."""

    judge: str
    threshold: float
    overall: ErrorRates
    by_category: dict[str, ErrorRates]
    by_attack: dict[str, ErrorRates]
    results: list[CaseResult]
    seconds: float = 0.0

    @property
    def auroc(self) -> float:
        """Threshold-free: the probability that a random correct response outscores a random wrong one (NaN when
        the cases have one label only)."""
        return auroc([r.score for r in self.results], [r.case.label for r in self.results])

    def category_auroc(self) -> dict[str, float]:
        """Per category, the AUROC of its cases against every case of the other label: for a category of wrong
        answers, the probability that a random correct response outscores one of them; for a category of correct
        answers, that one of them outscores a random wrong response (NaN for a category with both labels or none
        of the other)."""
        out = {}
        for category in self.by_category:
            mine = [r for r in self.results if r.case.group == category]
            labels = {r.case.label for r in mine}
            if len(labels) != 1:
                out[category] = math.nan
                continue
            others = [r for r in self.results if r.case.label != next(iter(labels))]
            both = mine + others
            out[category] = auroc([r.score for r in both], [r.case.label for r in both])
        return out

    def worst_cases(self, k: int = 10) -> list[CaseResult]:
        """The ``k`` misjudged cases the judge was surest about (furthest from the threshold on the wrong side)."""
        wrong = [r for r in self.results if r.wrong(self.threshold)]
        return sorted(wrong, key=lambda r: -abs(r.score - self.threshold))[:k]

    def worst_attacks(self, k: int = 10) -> list[tuple[str, ErrorRates]]:
        """The ``k`` attacks with the highest false-positive rate (those that fooled the judge at least once)."""
        fooled = [(a, r) for a, r in self.by_attack.items() if r.false_positives]
        return sorted(fooled, key=lambda item: (-item[1].fpr, -item[1].mean_negative_score))[:k]

    def to_dict(self, *, include_results: bool = True) -> dict[str, Any]:
        out = {
            "judge": self.judge,
            "threshold": self.threshold,
            "seconds": self.seconds,
            "overall": self.overall.to_dict(),
            "auroc": _json_safe(self.auroc),
            "by_category": {k: v.to_dict() for k, v in self.by_category.items()},
            "category_auroc": _json_safe(self.category_auroc()),
            "by_attack": {k: v.to_dict() for k, v in self.by_attack.items()},
            "worst_cases": [r.to_dict() for r in self.worst_cases()],
        }
        if include_results:
            out["results"] = [r.to_dict() for r in self.results]
        return out


def audit(
    judge: Reward,
    cases: Iterable[AuditCase],
    threshold: float = 0.5,
    batch_size: int = 16,
    *,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Score every case with ``judge`` (in batches of ``batch_size``) and count its errors at ``threshold``:
    a false positive is a label-0 case scored ``>= threshold``, a false negative a label-1 case scored below it.

    ``progress(n)`` is called after each batch with the number of cases it scored.
    """
    check_range("threshold", threshold)
    check_range("batch_size", batch_size, 1, integer=True)
    if not isinstance(judge, Reward):
        raise ConfigError(f"judge must be a Reward, got {type(judge).__name__}")
    cases = list(cases)
    results: list[CaseResult] = []
    start = time.perf_counter()
    for i in range(0, len(cases), batch_size):
        chunk = cases[i : i + batch_size]
        scores = judge.batch([c.sample() for c in chunk])
        results += [CaseResult(c, float(s.value), s.reason) for c, s in zip(chunk, scores, strict=True)]
        if progress is not None:
            progress(len(chunk))
    seconds = time.perf_counter() - start

    def grouped(key: Callable[[AuditCase], str]) -> dict[str, ErrorRates]:
        groups: dict[str, list[CaseResult]] = collections.defaultdict(list)
        for r in results:
            if key(r.case):
                groups[key(r.case)].append(r)
        return {k: ErrorRates.of(v, threshold) for k, v in groups.items()}

    return AuditReport(
        judge=name or type(judge).__name__,
        threshold=float(threshold),
        overall=ErrorRates.of(results, threshold),
        by_category=grouped(lambda c: c.group),
        by_attack=grouped(lambda c: c.attack),
        results=results,
        seconds=seconds,
    )


@dataclass(frozen=True)
class PairwiseReport:
    """A pairwise judge on pairs of one correct and one wrong response to the same question.

    ``error_rate``: the judge's preference (both orders combined, as :class:`PairwiseJudge` returns it) does not
    favour the correct response (a tie counts as an error). ``inconsistency_rate``: the two single-order verdicts
    (P(yes) >= 0.5 that A is better) pick the same position, so the verdict follows the order, not the content."""

    judge: str
    pairs: int
    errors: int
    inconsistent: int
    by_category: dict[str, dict[str, float]]
    seconds: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.pairs if self.pairs else math.nan

    @property
    def inconsistency_rate(self) -> float:
        return self.inconsistent / self.pairs if self.pairs else math.nan

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({**asdict(self), "error_rate": self.error_rate,
                           "inconsistency_rate": self.inconsistency_rate})  # fmt: skip


def audit_pairwise(judge: Any, pairs: Iterable[Mapping[str, Any]], batch_size: int = 16, *,
                   name: str | None = None) -> PairwiseReport:  # fmt: skip
    """Score pairs (``question``, ``reference``, ``a``, ``b``, ``label`` "A"/"B", ``pair_id``, ``category``, as
    :func:`agentenv.envs.judge.data.pairwise_cases` writes them) with a :class:`PairwiseJudge`. The judge sees
    both orders of each pair whatever the input holds, so one row per ``pair_id`` is used."""
    check_range("batch_size", batch_size, 1, integer=True)
    seen: dict[str, Mapping[str, Any]] = {}
    for pair in pairs:
        seen.setdefault(str(pair.get("pair_id", pair.get("id", len(seen)))), pair)
    rows = list(seen.values())
    start = time.perf_counter()
    errors = inconsistent = 0
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        jobs = []
        for pair in chunk:
            good, bad = (pair["a"], pair["b"]) if pair["label"] == "A" else (pair["b"], pair["a"])
            question, reference = pair["question"], pair.get("reference")
            jobs.append(tuple(Sample(prompt=question, response=r, reference=reference) for r in (good, bad)))
        for pair, score in zip(chunk, judge.compare_batch(jobs), strict=True):
            wrong = not score.value > 0.5
            p_ab, p_ba = score.parts.get("p_yes.ab"), score.parts.get("p_yes.ba")
            mixed = p_ab is None or (p_ab >= 0.5) == (p_ba >= 0.5)
            errors += wrong
            inconsistent += mixed
            counts = per[str(pair.get("category", ""))]
            counts[0] += 1
            counts[1] += wrong
            counts[2] += mixed
    by_category = {k: {"pairs": n, "error_rate": e / n, "inconsistency_rate": m / n} for k, (n, e, m) in per.items()}
    return PairwiseReport(name or type(judge).__name__, len(rows), errors, inconsistent, by_category,
                          round(time.perf_counter() - start, 1))  # fmt: skip


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    return x


def resolve_judge(spec: str, kind: str = "pointwise") -> Reward:
    """A judge from a name in :data:`JUDGES`, ``model:NAME_OR_PATH`` (a :class:`PointwiseJudge` on a local model: a
    folder such as a trained judge's ``runs/…/final``, or a hub id), ``openai:URL#MODEL`` (a :class:`PointwiseJudge`
    on an OpenAI-compatible server; ``#MODEL`` defaults to ``default``), or an import path ``module:attr`` to a
    Reward instance, a Reward class, or a factory returning a Reward (called with no arguments). The ``model:`` and
    ``openai:`` names are :func:`agentenv.policy.parse_backend`'s, as ``agentenv eval --policy`` takes them
    (``vllm:PATH`` is refused with what to do instead). ``kind="pairwise"`` builds a :class:`PairwiseJudge` instead
    for ``model:``, ``openai:`` and ``pointwise``.
    """
    if kind not in ("pointwise", "pairwise"):
        raise ConfigError(f"kind={kind!r} must be 'pointwise' or 'pairwise'")
    if kind == "pairwise" and spec == "pointwise":
        spec = "agentenv.rewards.judges:PairwiseJudge"
    if spec.partition(":")[0] in MODEL_KINDS:
        return _backend_judge(spec, kind)
    if spec in JUDGES:
        module, attr = JUDGES[spec]
    elif ":" in spec:
        module, _, attr = spec.partition(":")
    else:
        allowed = f"choose one of {list(JUDGES)}, model:PATH, openai:URL#MODEL or an import path 'module:attr'"
        raise ConfigError(f"judge={spec!r} is not allowed; {allowed}")
    try:
        obj: Any = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("torch", "transformers", "gguf"):
            raise ConfigError(f"judge {spec!r} needs {e.name}: pip install 'agentenv[train]'") from e
        raise ConfigError(f"judge {spec!r}: cannot import module {module!r} ({e})") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"judge {spec!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, Reward):
        return obj
    if not callable(obj):
        raise ConfigError(f"judge {spec!r} is a {type(obj).__name__}, not a Reward, a Reward class or a factory")
    try:
        inspect.signature(obj).bind()
    except TypeError as e:
        raise ConfigError(f"judge {spec!r} must be callable with no arguments ({e})") from e
    except ValueError:  # builtins without a signature
        pass
    judge = obj()
    if not isinstance(judge, Reward):
        raise ConfigError(f"judge {spec!r} returned a {type(judge).__name__}, not a Reward")
    return judge


def _backend_judge(spec: str, kind: str) -> Reward:
    from agentenv.rewards.judges import LocalLM, OpenAIServer, PairwiseJudge, PointwiseJudge

    backend = parse_backend(spec, "judge")
    if backend.kind == "vllm":
        raise ConfigError(
            f"judge={spec!r}: judges have no in-process vLLM backend yet; serve the model (vllm serve "
            f"{backend.target}) and pass judge=openai:http://localhost:8000/v1#{backend.target}"
        )
    cls = PairwiseJudge if kind == "pairwise" else PointwiseJudge
    return cls(LocalLM(backend.target) if backend.kind == "model" else OpenAIServer(backend.target, backend.model))


# ---- guards in front of a judge -------------------------------------------------------------------------------


def guarded(judge: Reward, *, extract: bool = True) -> Sequential:
    """The recommended judge composition: cheap rule guards first, the judge last, fail-fast.

    A response reaches the judge only if it is not degenerate (empty, symbols, bare reasoning openers in any of
    the guards' languages), it does not just restate the question, and an answer can be extracted from it (a
    marked one or the last line). With ``extract`` the judge then sees only that answer, not the text around it.
    """
    try:
        from agentenv.rewards import guards
        from agentenv.rewards.extract import Extract
    except ImportError as e:
        raise ConfigError(f"guarded() needs the rule guards (agentenv.rewards.guards): {e}") from e
    return Sequential(
        {
            "non_degenerate": guards.DegenerateAnswer(),
            "no_echo": guards.ReferenceEcho(),
            "answer_present": guards.AnswerPresent(how="auto"),
            "judge": Extract(judge, how="auto") if extract else judge,
        }
    )


# ---- monitoring a training judge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorReport:
    """Agreement of a judge with a gold verifier over the monitor's rolling window of sampled rollouts."""

    flagged: bool
    reasons: tuple[str, ...] = ()
    window: int = 0  # sampled pairs in the window
    seen: int = 0  # rollouts observed in all
    sampled: int = 0  # rollouts checked by the gold verifier in all
    agreement: float = math.nan
    false_positive_rate: float = math.nan  # judge accepts | gold rejects: the reward-hacking signal
    false_negative_rate: float = math.nan  # judge rejects | gold accepts
    judge_accept_rate: float = math.nan
    gold_accept_rate: float = math.nan
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({**asdict(self), "reasons": list(self.reasons)})


class JudgeMonitor(Reward):
    """Scores with ``judge`` and, on a random ``sample_rate`` share of rollouts, also with ``gold`` (a trusted,
    usually costlier verifier), keeping the last ``window`` pairs. Divergence is flagged when, over at least
    ``min_samples`` pairs, the judge accepts more than ``max_false_positive_rate`` of what gold rejects or
    disagrees with gold on more than ``max_disagreement`` of the pairs.

    Use it in place of the judge (its value is the judge's, unchanged), or call :meth:`observe` on rollouts the
    judge already scored. It never raises: a failure is logged and returned in :attr:`MonitorReport.error`.
    """

    def __init__(
        self,
        judge: Reward,
        gold: Reward,
        *,
        sample_rate: float = 0.1,
        window: int = 256,
        threshold: float = 0.5,
        max_false_positive_rate: float = 0.1,
        max_disagreement: float = 0.2,
        min_samples: int = 32,
        seed: int | None = 0,
    ):
        super().__init__()
        for name, value in (("judge", judge), ("gold", gold)):
            if not isinstance(value, Reward):
                raise ConfigError(f"JudgeMonitor: {name} must be a Reward, got {type(value).__name__}")
        check_range("sample_rate", sample_rate, 0.0, 1.0)
        check_range("window", window, 1, integer=True)
        check_range("threshold", threshold)
        check_range("max_false_positive_rate", max_false_positive_rate, 0.0, 1.0)
        check_range("max_disagreement", max_disagreement, 0.0, 1.0)
        check_range("min_samples", min_samples, 1, integer=True)
        self.judge, self.gold = judge, gold
        self.sample_rate, self.threshold = float(sample_rate), float(threshold)
        self.max_false_positive_rate, self.max_disagreement = float(max_false_positive_rate), float(max_disagreement)
        self.min_samples = min_samples
        self._pairs: collections.deque[tuple[bool, bool]] = collections.deque(maxlen=window)  # (judge, gold)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._seen = self._sampled = 0
        self.report = MonitorReport(flagged=False)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        scores = self.judge.batch(samples)
        self.observe(samples, scores)
        return scores

    def observe(self, samples: Sequence[Any], judge_scores: Sequence[float | Score] | None = None) -> MonitorReport:
        """Check a random share of ``samples`` against gold; ``judge_scores`` are the judge's scores for all of
        them if already computed (else the sampled ones are scored here). Returns the updated report.
        """
        try:
            samples = list(samples)
            if judge_scores is not None and len(judge_scores) != len(samples):
                raise ValueError(f"{len(judge_scores)} judge scores for {len(samples)} samples")
            with self._lock:
                picked = [i for i in range(len(samples)) if self._rng.random() < self.sample_rate]
            if judge_scores is None:
                judged = [float(s.value) for s in self.judge.batch([samples[i] for i in picked])]
            else:
                judged = [float(judge_scores[i]) for i in picked]
            golds = self.gold.batch([samples[i] for i in picked])
            with self._lock:
                self._seen += len(samples)
                self._sampled += len(picked)
                for j, g in zip(judged, golds, strict=True):
                    self._pairs.append((j >= self.threshold, g.value >= self.threshold))
                return self._update()
        except Exception as e:
            log.warning("JudgeMonitor failed to observe a batch: %s: %s", type(e).__name__, e)
            return replace(self.report, error=f"{type(e).__name__}: {e}")  # the last good stats, and what failed

    def _update(self) -> MonitorReport:
        pairs = list(self._pairs)
        n = len(pairs)
        rejected = [j for j, g in pairs if not g]
        accepted = [j for j, g in pairs if g]
        agreement = sum(j == g for j, g in pairs) / n if n else math.nan
        fpr = sum(rejected) / len(rejected) if rejected else math.nan
        reasons = []
        if n >= self.min_samples:
            if fpr > self.max_false_positive_rate:  # NaN compares False
                reasons.append(
                    f"judge accepts {fpr:.0%} of what the gold verifier rejects "
                    f"(limit {self.max_false_positive_rate:.0%}, {len(rejected)} rejected in the window)"
                )
            if 1 - agreement > self.max_disagreement:
                reasons.append(f"judge disagrees with the gold verifier on {1 - agreement:.0%} of {n} samples "
                               f"(limit {self.max_disagreement:.0%})")  # fmt: skip
        report = MonitorReport(
            flagged=bool(reasons), reasons=tuple(reasons), window=n, seen=self._seen, sampled=self._sampled,
            agreement=agreement, false_positive_rate=fpr,
            false_negative_rate=sum(not j for j in accepted) / len(accepted) if accepted else math.nan,
            judge_accept_rate=sum(j for j, _ in pairs) / n if n else math.nan,
            gold_accept_rate=len(accepted) / n if n else math.nan,
        )  # fmt: skip
        if report.flagged and not self.report.flagged:
            log.warning("judge diverges from the gold verifier: %s", "; ".join(reasons))
        elif self.report.flagged and not report.flagged:
            log.info("judge agrees with the gold verifier again (agreement %.0f%%)", 100 * agreement)
        self.report = report
        return report

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate:g}, window={self._pairs.maxlen}, threshold={self.threshold:g}"
