"""Fitting a judge prompt into the model's context: the longest fields are shortened in the middle first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentenv.rewards.judges.templates import Chat

MIN_KEPT_CHARS = 64  # a field is never cut below this (a question shortened to nothing is no question)


@dataclass
class Fitted:
    chat: Chat
    truncated: dict[str, str]  # field → "N → M characters kept"


def fit(
    render: Callable[[dict[str, str]], Chat], fields: dict[str, str], count: Callable[[Chat], int], limit: int,
    keep_tail: Sequence[str] = (),
) -> Fitted:  # fmt: skip
    """Render ``fields``, shortening the longest ones down to a common length, in the middle (or from the front, for
    ``keep_tail``), until the chat has at most ``limit`` tokens. Tokens convert to characters at the chat's ratio."""
    kept = {k: len(v) for k, v in fields.items()}  # characters of each original field that stay

    def shortened() -> dict[str, str]:
        out = {}
        for name, text in fields.items():
            n = kept[name]
            if n == len(text):
                out[name] = text
            elif name in keep_tail:
                out[name] = f"[... {len(text) - n} characters cut ...] " + text[len(text) - n :]
            else:
                out[name] = (
                    text[: n // 2] + f" [... {len(text) - n} characters cut ...] " + text[len(text) - (n - n // 2) :]
                )
        return out

    chat = render(fields)
    for _ in range(8 + len(fields)):
        tokens = count(chat)
        if tokens <= limit:
            break
        chars_per_token = sum(len(m["content"]) for m in chat) / max(tokens, 1)
        level = _water_level(list(kept.values()), int((tokens - limit + 8) * chars_per_token * 1.1) + 32)
        shorter = {k: min(n, max(MIN_KEPT_CHARS, level)) for k, n in kept.items()}
        if shorter == kept:
            break  # nothing left worth cutting: the backend cuts tokens from the left
        kept = shorter
        chat = render(shortened())
    truncated = {k: f"{len(v)} → {kept[k]} characters kept" for k, v in fields.items() if kept[k] != len(v)}
    return Fitted(chat, truncated)


def _water_level(lengths: list[int], excess: int) -> int:
    """The length L such that cutting every field longer than L down to L removes ``excess`` characters."""
    ordered = sorted(lengths, reverse=True)
    total = 0
    for j, length in enumerate(ordered, start=1):
        total += length
        level = (total - excess) // j
        if j == len(ordered) or level >= ordered[j]:
            return max(0, level)
    return 0
