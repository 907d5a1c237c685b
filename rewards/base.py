"""Reward components composed like ``torch.nn.Module``s: every component has a name, named children, and returns
a :class:`Score` — a total plus the named parts it was made of — so every component can be logged by name.

A component implements ``score(sample) -> Score`` (and, when it can batch, ``score_batch``). Calling it
(``reward(sample)``, ``reward.batch(samples)``, ``await reward.abatch(samples)``) adds the contract that training
relies on: bad input (``None``, bytes that are not UTF-8, non-strings, huge strings) scores 0 with a reason, and an
error inside a component scores 0 with the error as the reason instead of raising — unless ``strict=True``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentenv.errors import ConfigError, check_range

log = logging.getLogger(__name__)

#: Responses longer than this are not read (a reward is no place to parse megabytes): they score 0.
MAX_RESPONSE_CHARS = 200_000


@dataclass(frozen=True)
class Sample:
    """What a reward scores: an agent's response in its context."""

    response: str
    prompt: str = ""  # the question or task statement
    reference: str | None = None  # gold answer / reference text, when there is one
    messages: tuple[dict[str, Any], ...] = ()  # the whole conversation, for process and trajectory judges
    metadata: Mapping[str, Any] = field(default_factory=dict)  # e.g. test results, nuggets, tool schemas


@dataclass(frozen=True)
class Score:
    """A reward's value with the named parts behind it (flattened ``child.grandchild`` names) and why."""

    value: float
    parts: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)  # evidence: matched spans, judge outputs, ...

    def __float__(self) -> float:
        return self.value


def as_sample(x: Any) -> Sample | str:
    """Coerce what a caller passed into a :class:`Sample`, or return the reason it cannot be scored."""
    if isinstance(x, Sample):
        response = x.response
    elif isinstance(x, Mapping):
        try:
            return as_sample(Sample(**x))
        except TypeError as e:
            return f"not a sample: {e}"
    else:
        response = x
    if isinstance(response, (bytes, bytearray)):
        try:
            response = bytes(response).decode("utf-8")
        except UnicodeDecodeError:
            return "response is not valid UTF-8"
    if not isinstance(response, str):
        return f"response must be text, got {type(response).__name__}"
    if len(response) > MAX_RESPONSE_CHARS:
        return f"response has {len(response)} characters; the limit is {MAX_RESPONSE_CHARS}"
    try:
        response.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, decoded with surrogateescape
        return "response is not valid UTF-8"
    if isinstance(x, Sample):
        return x if response is x.response else replace(x, response=response)
    return Sample(response=response)


class Reward:
    """Base class of reward components. Subclasses implement :meth:`score` (and may override :meth:`score_batch`).

    Assigning a ``Reward`` to an attribute registers it as a named child, as ``nn.Module`` does.
    """

    strict: bool = False

    def __init__(self) -> None:
        object.__setattr__(self, "_children", {})

    def __setattr__(self, name: str, value: Any) -> None:
        children = self.__dict__.get("_children")
        if children is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before setting {name}")
        if isinstance(value, Reward):
            children[name] = value
        else:
            children.pop(name, None)
        object.__setattr__(self, name, value)

    # ---- what subclasses implement ------------------------------------------------------------------------
    def score(self, sample: Sample) -> Score:
        raise NotImplementedError(f"{type(self).__name__} must implement score(sample)")

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        return [self.score(s) for s in samples]

    # ---- what callers use -------------------------------------------------------------------------------
    def __call__(self, sample: Any, **context: Any) -> Score:
        """Score one sample (a :class:`Sample`, a dict of its fields, or a bare response string)."""
        return self.batch([sample], **context)[0]

    def batch(self, samples: Iterable[Any], **context: Any) -> list[Score]:
        """Score many samples at once (judges batch their model calls). Never raises unless ``strict``."""
        prepared = [as_sample(_with_context(s, context)) for s in samples]
        valid = [(i, s) for i, s in enumerate(prepared) if isinstance(s, Sample)]
        out: list[Score] = [Score(0.0, {}, reason=str(s)) for s in prepared]
        if not valid:
            return out
        try:
            scores = self.score_batch([s for _, s in valid])
        except Exception as e:
            if self.strict:
                raise
            log.warning("%s failed on a batch of %d: %s", type(self).__name__, len(valid), e)
            scores = [Score(0.0, {}, reason=f"{type(self).__name__} failed: {type(e).__name__}: {e}")] * len(valid)
        for (i, _), score in zip(valid, scores, strict=True):
            out[i] = _finite(score)
        return out

    async def abatch(self, samples: Iterable[Any], **context: Any) -> list[Score]:
        """:meth:`batch` off the event loop (HTTP judges override it to run requests concurrently)."""
        return await asyncio.to_thread(self.batch, list(samples), **context)

    # ---- the module tree ----------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Reward]]:
        yield from self._children.items()

    def named_rewards(self, prefix: str = "") -> Iterator[tuple[str, Reward]]:
        """This component and all below it, with dotted names (like ``nn.Module.named_modules``)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_rewards(f"{prefix}.{name}" if prefix else name)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.named_children())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


def _with_context(sample: Any, context: Mapping[str, Any]) -> Any:
    if not context:
        return sample
    if isinstance(sample, Sample):
        return replace(sample, **context)
    if isinstance(sample, Mapping):
        return {**sample, **context}
    return {"response": sample, **context}


def _finite(score: Score) -> Score:
    if isinstance(score.value, (int, float)) and math.isfinite(score.value):
        return score
    return Score(0.0, dict(score.parts), reason=f"non-finite reward {score.value!r} replaced by 0")


def prefixed(name: str, score: Score) -> dict[str, float]:
    """A child's parts under ``name``: its own value as ``name`` and its parts as ``name.part``."""
    parts = {name: float(score.value)}
    parts.update({f"{name}.{k}": float(v) for k, v in score.parts.items()})
    return parts


class RewardFn(Reward):
    """A plain function as a component: ``fn(sample) -> float | Score``."""

    def __init__(self, fn: Any, name: str = ""):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")

    def score(self, sample: Sample) -> Score:
        out = self.fn(sample)
        return out if isinstance(out, Score) else Score(float(out))

    def extra_repr(self) -> str:
        return self.name


# ---- containers ---------------------------------------------------------------------------------------------


class RewardDict(Reward):
    """Named children, scored together; the value is their plain sum (use :class:`WeightedSum` to weigh them)."""

    def __init__(self, rewards: Mapping[str, Reward] | None = None, **kwargs: Reward):
        super().__init__()
        for name, reward in {**(rewards or {}), **kwargs}.items():
            if not isinstance(reward, Reward):
                raise ConfigError(f"{type(self).__name__}: {name!r} must be a Reward, got {type(reward).__name__}")
            setattr(self, name, reward)

    def children_scores(self, samples: Sequence[Sample]) -> list[dict[str, Score]]:
        by_child = {name: child.batch(samples) for name, child in self.named_children()}
        return [{name: scores[i] for name, scores in by_child.items()} for i in range(len(samples))]

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        return [self._combine(scores) for scores in self.children_scores(samples)]

    def _combine(self, scores: Mapping[str, Score]) -> Score:
        parts: dict[str, float] = {}
        for name, score in scores.items():
            parts.update(prefixed(name, score))
        reasons = "; ".join(f"{n}: {s.reason}" for n, s in scores.items() if s.reason)
        return Score(sum(s.value for s in scores.values()), parts, reason=reasons)


class RewardList(RewardDict):
    """Children named ``0``, ``1``, ... in order."""

    def __init__(self, rewards: Iterable[Reward]):
        super().__init__({str(i): r for i, r in enumerate(rewards)})


class WeightedSum(RewardDict):
    """``sum_i w_i * r_i`` over named children; ``normalize=True`` divides by the sum of weights."""

    def __init__(
        self, rewards: Mapping[str, Reward | tuple[Reward, float]] | None = None, *, normalize: bool = False,
        **kwargs: Reward | tuple[Reward, float],
    ):  # fmt: skip
        items = {**(rewards or {}), **kwargs}
        weights = {}
        children = {}
        for name, item in items.items():
            reward, weight = item if isinstance(item, tuple) else (item, 1.0)
            check_range(f"weight of {name!r}", weight)
            children[name], weights[name] = reward, float(weight)
        super().__init__(children)
        self.weights = weights
        self.normalize = normalize
        if normalize and not sum(abs(w) for w in weights.values()):
            raise ConfigError("WeightedSum(normalize=True) needs a non-zero weight")

    def _combine(self, scores: Mapping[str, Score]) -> Score:
        total = sum(self.weights[n] * s.value for n, s in scores.items())
        if self.normalize:
            total /= sum(abs(w) for w in self.weights.values())
        base = super()._combine(scores)
        return Score(total, base.parts, reason=base.reason)

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={w:g}" for n, w in self.weights.items()) + (", normalize" if self.normalize else "")


class Gate(Reward):
    """``reward`` only when ``gate`` scores at least ``threshold``; otherwise ``otherwise`` (default 0).

    E.g. a format gate in front of a judge, so an empty or degenerate answer never reaches the judge.
    """

    def __init__(self, gate: Reward, reward: Reward, *, threshold: float = 0.5, otherwise: float = 0.0):
        super().__init__()
        self.gate, self.reward = gate, reward
        self.threshold, self.otherwise = float(threshold), float(otherwise)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        gates = self.gate.batch(samples)
        passed = [i for i, g in enumerate(gates) if g.value >= self.threshold]
        inner = dict(zip(passed, self.reward.batch([samples[i] for i in passed]), strict=True))
        out = []
        for i, gate in enumerate(gates):
            parts = prefixed("gate", gate)
            if i in inner:
                parts.update(prefixed("reward", inner[i]))
                out.append(Score(inner[i].value, parts, reason=inner[i].reason, details=inner[i].details))
            else:
                why = gate.reason or f"gate scored {gate.value:g} < {self.threshold:g}"
                out.append(Score(self.otherwise, parts, reason=f"gated: {why}"))
        return out

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}, otherwise={self.otherwise:g}"


class Sequential(RewardDict):
    """Fail-fast chain: children run in order; the first that scores below its threshold ends the chain with 0.

    When every child passes, the value is the last child's. Later children never see samples an earlier one
    rejected (cheap checks first, the expensive judge last).
    """

    def __init__(self, steps: Mapping[str, Reward | tuple[Reward, float]], default_threshold: float = 0.5):
        children, thresholds = {}, {}
        for name, item in steps.items():
            reward, threshold = item if isinstance(item, tuple) else (item, default_threshold)
            children[name], thresholds[name] = reward, float(threshold)
        if not children:
            raise ConfigError("Sequential needs at least one step")
        super().__init__(children)
        self.thresholds = thresholds

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        alive = list(range(len(samples)))
        parts: list[dict[str, float]] = [{} for _ in samples]
        values: list[float] = [0.0] * len(samples)
        reasons: list[str] = [""] * len(samples)
        names = list(self._children)
        for k, name in enumerate(names):
            scores = self._children[name].batch([samples[i] for i in alive])
            survivors = []
            for i, score in zip(alive, scores, strict=True):
                parts[i].update(prefixed(name, score))
                if k == len(names) - 1:
                    values[i], reasons[i] = score.value, score.reason
                elif score.value >= self.thresholds[name]:
                    survivors.append(i)
                else:
                    reasons[i] = f"stopped at {name}: " + (
                        score.reason or f"{score.value:g} < {self.thresholds[name]:g}"
                    )
            alive = survivors
        return [Score(v, p, reason=r) for v, p, r in zip(values, parts, reasons, strict=True)]
