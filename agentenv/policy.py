"""The policy contract: what the rollout engine, :func:`~agentenv.rollout.play_episode` and ``agentenv eval`` need
from a runner, and the one way to name a backend.

Runners live in ``agentenv.policies`` (transformers, OpenAI-compatible HTTP, vLLM, scripted); this module holds only
what they share, so the core depends on the contract and never on a runner. Every runner is an
:class:`EpisodePolicy` (``play_episode`` plays it turn by turn); model runners are also :class:`TokenPolicy`
(``rollout`` batches their token-id prompts).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from agentenv.errors import ConfigError, check_range, closest

if TYPE_CHECKING:
    from agentenv.core import TextEnv
    from agentenv.spaces import ToolCall


@dataclass
class Generation:
    """One agent turn as generated: its token ids, the sampling log-probabilities of those ids, why it ended."""

    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"  # "stop" (end-of-turn token), "length" (max_new_tokens) or "error"
    text: str = ""
    error: str = ""


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_range("max_new_tokens", self.max_new_tokens, 1, integer=True)
        check_range("temperature", self.temperature, 0.0)
        check_range("top_p", self.top_p, 0.0, 1.0)


@runtime_checkable
class EpisodePolicy(Protocol):
    """Plays one episode at a time, turn by turn: what :func:`~agentenv.rollout.play_episode` calls.

    ``start`` sees the env itself (a scripted policy may ask it for a walkthrough); ``act`` returns the agent's next
    turn: its text (model runners) or a parsed tool call. Every runner, scripted or model, is one.
    """

    name: str

    def start(self, env: TextEnv, observation: str, info: dict[str, Any]) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str | ToolCall | list[ToolCall]: ...


@runtime_checkable
class TokenPolicy(EpisodePolicy, Protocol):
    """A model runner: token-id prompts in, one :class:`Generation` per prompt out, what
    :func:`~agentenv.rollout.rollout` batches across live episodes (token-exact: the ids trained on are the ids
    generated).

    ``sampling`` is the default when ``generate`` gets none (its ``max_new_tokens`` tells the rollout how much
    room a turn needs); ``tokenizer`` is what the chat format is built from (``None`` for a server runner without
    one, which then plays text turns only).
    """

    sampling: Sampling
    tokenizer: Any

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]: ...


SCRIPTED = ("random", "walkthrough")
MODEL_KINDS = ("model", "openai", "vllm")
BACKENDS = (*SCRIPTED, "model:NAME|PATH", "openai:URL[#MODEL]", "vllm:PATH")
DEFAULT_SERVED_MODEL = "default"  # the model name sent to a server when the spec names none
GPU_EXTRA = "pip install 'agentenv[gpu]'"


class Backend(NamedTuple):
    """A parsed backend spec: ``kind`` (random, walkthrough, model, openai, vllm), ``target`` (a model name or
    folder, a server URL), ``model`` (the served model's name, openai only)."""

    kind: str
    target: str = ""
    model: str = ""


def parse_backend(spec: str, what: str = "policy") -> Backend:
    """Parse ``random``, ``walkthrough``, ``model:NAME|PATH``, ``openai:URL[#MODEL]`` or ``vllm:PATH``.

    ``model:`` takes a hub id, ``default`` (the offline small model), ``tiny``, or a folder (a path that does not
    exist fails here); ``openai:`` a ``http(s)://`` base URL and the served model's name (default ``default``);
    ``vllm:`` a model folder or hub id, and vllm installed (the ``gpu`` extra). Fails fast with a
    :class:`ConfigError` naming ``what`` and the allowed forms; builds nothing (see
    ``agentenv.policies.build_policy``).
    """
    if spec in SCRIPTED:
        return Backend(spec)
    kind, colon, rest = spec.partition(":")
    if not colon or kind not in MODEL_KINDS:
        hint = closest(f"{kind}:" if colon else spec, [*SCRIPTED, *(f"{k}:" for k in MODEL_KINDS)], n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{what}={spec!r} is not allowed; choose one of {', '.join(BACKENDS)}.{did_you_mean}")
    if kind == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{what}={spec!r}: expected openai:http(s)://HOST[:PORT]/v1[#MODEL]")
        return Backend(kind, url, model or DEFAULT_SERVED_MODEL)
    if not rest:
        raise ConfigError(f"{what}={spec!r} needs a model folder or hub id after the colon, e.g. {kind}:runs/x/final")
    folder = Path(rest).expanduser()
    path_like = rest.startswith((".", "/", "~")) or rest.strip("/").count("/") > 1  # 'org/name' is a hub id
    if path_like and not folder.exists():
        raise ConfigError(f"{what}={spec!r}: no model folder at {rest!r}")
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{what}={spec!r} needs vllm, which is not installed (GPU machines): {GPU_EXTRA}")
    return Backend(kind, str(folder) if folder.exists() else rest)


__all__ = [
    "BACKENDS",
    "GPU_EXTRA",
    "MODEL_KINDS",
    "SCRIPTED",
    "Backend",
    "EpisodePolicy",
    "Generation",
    "Sampling",
    "TokenPolicy",
    "parse_backend",
]
