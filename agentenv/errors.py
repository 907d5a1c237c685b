"""Errors that users see. Each message says what was wrong and what is allowed."""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable

import gymnasium


class ConfigError(ValueError):
    """Bad configuration (an env kwarg, a recipe field): raised at once, naming the field and what is allowed."""


class UnknownEnvError(gymnasium.error.UnregisteredEnv):
    """An env id that is not registered; the message lists the closest registered ids."""


class EnvContractError(AssertionError):
    """An environment breaks the AgentEnv contract (see :func:`agentenv.testing.check_env`)."""


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages: safe on huge or deeply nested values."""
    shortener = _ShortRepr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 6
    try:
        return shortener.repr(value)
    except Exception:  # a repr that fails in a way reprlib does not catch
        return f"<{type(value).__name__} object>"


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # repr of an int past sys.get_int_max_str_digits() raises ValueError
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


def closest(word: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The choices most similar to ``word``, best first (case-insensitive)."""
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.4)]


def check_choice(field: str, value: object, allowed: Iterable[object]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    # True == 1 and 1.0 == 1 in Python: a bool must match a bool, and a non-bool must not match one.
    if not any(_equal(value, a) and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
        hint = closest(value if isinstance(value, str) else short_repr(value), [str(a) for a in allowed], n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{field}={short_repr(value)} is not allowed; choose one of {allowed}.{did_you_mean}")


def check_range(
    field: str, value: object, low: float | None = None, high: float | None = None, *, integer: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number (an int if ``integer``) within [low, high].

    NaN compares false to every bound and inf passes open ones, so both are refused here, by name.
    """
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{field}={short_repr(value)} must be {'an int' if integer else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{field}={value!r} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"{field}={value!r} is out of range; allowed: {bounds}")


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. an array, whose == has no single truth value
        return False
