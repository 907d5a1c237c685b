"""Spaces for text environments.

Gymnasium's ``Text`` space only admits a fixed charset (alphanumerics by default), which rejects most of what an
LLM writes. :class:`TextSpace` admits any Unicode string up to ``max_length`` characters, and registers itself
with Gymnasium's vector utilities so ``make_vec`` works in both sync and async (shared-memory) modes.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.spaces import Space, Tuple
from gymnasium.vector.utils import (
    batch_differing_spaces,
    batch_space,
    concatenate,
    create_empty_array,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
    write_to_shared_memory,
)

# What `sample()` draws from: printable ASCII plus a few letters outside it, so samplers exercise Unicode.
_SAMPLE_ALPHABET = tuple(chr(c) for c in range(32, 127)) + tuple("éüßçñøåλπΩжЯ中文字日本語한국")


class TextSpace(Space[str]):
    """Any Unicode string of ``min_length`` to ``max_length`` characters.

    ``sample()`` draws short random strings (at most ``sample_max_length`` characters) so that sampled
    actions stay readable in logs; it is meant for smoke tests, not as a policy.
    """

    def __init__(
        self,
        max_length: int = 16_384,
        *,
        min_length: int = 0,
        sample_max_length: int = 32,
        seed: int | np.random.Generator | None = None,
    ):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if not isinstance(min_length, int) or not 0 <= min_length <= max_length:
            raise ValueError(f"min_length must be an int in [0, max_length={max_length}], got {min_length!r}")
        self.max_length = max_length
        self.min_length = min_length
        self.sample_max_length = max(min_length, min(sample_max_length, max_length))
        super().__init__(dtype=str, seed=seed)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is not None or probability is not None:
            raise NotImplementedError(f"{type(self).__name__}.sample() takes no mask or probability")
        length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
        picks = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in picks)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def to_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)

    def from_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.max_length == self.max_length  # type: ignore[attr-defined]
            and other.min_length == self.min_length  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash((type(self), self.max_length, self.min_length))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_length={self.max_length}, min_length={self.min_length})"


@dataclass(frozen=True)
class ToolCall:
    """A parsed tool call: the agent asks the environment to run tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


class ActionSpace(TextSpace):
    """The agent's turn: free text, or a parsed :class:`ToolCall` (or a list of them) for tool-using envs.

    Membership is deliberately lenient about *content*: a string that the env cannot parse is still in the
    space; the env reports it as an invalid turn. Only type and length decide membership.
    """

    def contains(self, x: Any) -> bool:
        if isinstance(x, ToolCall):
            return True
        if isinstance(x, list) and x and all(isinstance(c, ToolCall) for c in x):
            return True
        return super().contains(x)


# ---- Gymnasium vector-env support ---------------------------------------------------------------------
# Batched text observations are tuples of strings, as Gymnasium does for its own `Text` space.


@batch_space.register(TextSpace)
def _batch_text_space(space: TextSpace, n: int = 1) -> Tuple:
    batched = Tuple(tuple(_copy_space(space) for _ in range(n)))
    batched.seed(list(map(int, space.np_random.integers(0, 2**31 - 1, n))))
    return batched


@batch_differing_spaces.register(TextSpace)
def _batch_differing_text_spaces(spaces: Sequence[TextSpace]) -> Tuple:
    return Tuple(tuple(_copy_space(s) for s in spaces))


@concatenate.register(TextSpace)
def _concatenate_text(space: TextSpace, items: Iterable[str], out: Any) -> tuple[str, ...]:
    return tuple(items)


@iterate.register(TextSpace)
def _iterate_text(space: TextSpace, items: Iterable[str]) -> Iterable[str]:
    return iter(items)


@create_empty_array.register(TextSpace)
def _empty_text(space: TextSpace, n: int = 1, fn: Callable = np.zeros) -> tuple[str, ...]:
    return tuple("" for _ in range(n))


# Shared memory holds, per sub-env, one int32 length followed by max_length UTF-32 code points.
@create_shared_memory.register(TextSpace)
def _text_shared_memory(space: TextSpace, n: int = 1, ctx: Any = mp) -> Any:
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@write_to_shared_memory.register(TextSpace)
def _write_text(space: TextSpace, index: int, value: str, shared_memory: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{type(space).__name__} shared memory holds str, got {type(value).__name__}")
    width = space.max_length + 1
    codes = np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype=np.int32)
    if codes.size > space.max_length:
        raise ValueError(f"observation of {codes.size} characters exceeds max_length={space.max_length}")
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)[index * width : (index + 1) * width]
    dest[0] = codes.size
    dest[1 : 1 + codes.size] = codes


class SharedTextBatch(Sequence):
    """A live view of a batch of texts in shared memory (what ``AsyncVectorEnv`` reads once and keeps).

    ``AsyncVectorEnv`` calls ``read_from_shared_memory`` once, at construction, and relies on the result
    tracking later writes, as numpy views do. Each access decodes the current text; ``deepcopy`` (what the
    vector env returns with ``copy=True``, its default) gives a plain tuple of ``str``.
    """

    def __init__(self, rows: np.ndarray):
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        row = self._rows[index]
        return row[1 : 1 + row[0]].tobytes().decode("utf-32-le", "surrogatepass")

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable view

    def __repr__(self) -> str:
        return f"{type(self).__name__}{tuple(self)!r}"


@read_from_shared_memory.register(TextSpace)
def _read_text(space: TextSpace, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(n, space.max_length + 1))


def _copy_space(space: TextSpace) -> TextSpace:
    return type(space)(space.max_length, min_length=space.min_length, sample_max_length=space.sample_max_length)
