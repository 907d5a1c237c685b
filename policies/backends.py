"""A runner from its name — ``random``, ``walkthrough``, ``model:NAME|PATH``, ``openai:URL[#MODEL]``, ``vllm:PATH`` —
the names :func:`agentenv.policy.parse_backend` reads, for ``agentenv eval --policy`` as for ``judge-audit --judge``."""

from __future__ import annotations

from typing import Any

from agentenv.errors import ConfigError
from agentenv.policy import SCRIPTED, Backend, EpisodePolicy, Sampling, parse_backend


def build_policy(
    spec: str | Backend,
    *,
    sampling: Sampling | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    threads: int | None = None,
) -> EpisodePolicy:
    """The runner ``spec`` names; its ``name`` is the spec. Scripted policies take ``seed``; model runners take
    ``sampling``, ``batch_size`` (prompts per forward pass; requests in flight for a server) and ``threads`` (torch).

    ``openai:URL#MODEL`` plays in token mode with MODEL's tokenizer when :func:`agentenv.models.load_tokenizer` finds
    one (``default``, ``tiny``, a folder, a hub id: how vLLM names a served model), else in chat mode (text only,
    ``tokenizer`` is None): any hosted model.
    """
    backend = parse_backend(spec) if isinstance(spec, str) else spec
    name = spec if isinstance(spec, str) else _spec(backend)
    runner: Any
    if backend.kind in SCRIPTED:
        from agentenv.policies.scripted import make_policy

        return make_policy(backend.kind, seed=seed)
    if backend.kind == "model":
        from agentenv.policies.local import TransformersPolicy

        runner = TransformersPolicy.from_pretrained(backend.target, sampling, num_threads=threads)
        runner.batch_size = batch_size
    elif backend.kind == "openai":
        from agentenv.policies.openai_compat import OpenAIPolicy

        tokenizer = served_tokenizer(backend.model)
        runner = OpenAIPolicy(
            backend.target, backend.model, sampling=sampling, tokenizer=tokenizer, concurrency=batch_size
        )
    else:
        from agentenv.policies.vllm import VLLMPolicy

        runner = VLLMPolicy(backend.target, sampling)
    runner.name = name
    return runner


def served_tokenizer(model: str) -> Any:
    """The tokenizer of a served model's name, or None when no tokenizer can be found for it (a hosted model)."""
    from agentenv.models import load_tokenizer

    try:
        return load_tokenizer(model)
    except (ConfigError, ImportError, OSError, ValueError):
        return None


def _spec(backend: Backend) -> str:
    if backend.kind in SCRIPTED:
        return backend.kind
    return f"{backend.kind}:{backend.target}" + (f"#{backend.model}" if backend.model else "")
