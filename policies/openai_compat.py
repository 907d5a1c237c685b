"""A policy behind an OpenAI-compatible HTTP server: token ids in and out with vLLM, SGLang or llama.cpp, chat text
with any API.

Token mode (:meth:`OpenAIPolicy.generate`, what :func:`agentenv.rollout.rollout` calls) sends each prompt as token
ids to ``/v1/completions`` and reads the generated ids and their log-probabilities back from the response's
``logprobs``, in either server's form: vLLM's ``return_tokens_as_token_ids`` (``tokens: ["token_id:123", ...]``
with ``token_logprobs``) or llama.cpp's ``content: [{"id": 123, "logprob": ...}, ...]`` (llama.cpp ignores
``return_tokens_as_token_ids``). Trajectories stay token-exact and trainable. Chat mode (:meth:`OpenAIPolicy.chat`)
sends messages to ``/v1/chat/completions`` and gets text back: any hosted model, for evaluation only.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Sequence
from typing import Any

from agentenv.core import TextEnv
from agentenv.errors import ConfigError
from agentenv.http import OpenAIClient, run_sync
from agentenv.policies.turns import TurnByTurn
from agentenv.policy import Generation, Sampling

TOKEN_ID_PREFIX = "token_id:"  # how vLLM spells a token with return_tokens_as_token_ids


class OpenAIPolicy(TurnByTurn):
    """Generation by a served model; one request per prompt, at most ``concurrency`` in flight per event loop.

    Requests are retried on connection errors, timeouts, 429 and 5xx (``retries`` times, exponential ``backoff``
    in seconds); one that still fails gives that prompt a :class:`Generation` with ``finish_reason="error"`` and the
    error text, and the rest of the batch is unaffected. ``api_key`` defaults to ``$OPENAI_API_KEY``.

    Token mode needs a server that returns token ids (vLLM, SGLang with vLLM's extensions, llama.cpp); others raise
    :class:`~agentenv.errors.ConfigError` at the first call, unless ``tokenizer`` is given and
    ``allow_retokenize=True``: the returned text is then re-encoded (plus the end-of-turn id when the server says
    ``"stop"``), which is *not* token-exact and has no logprobs — fine for evaluation, wrong for training.
    ``stop_token_ids`` (a vLLM extension; default: the tokenizer's eos) end a turn, and stay in its ids.
    Logprobs are the server's: vLLM reports raw model log-probabilities unless started with
    ``--logprobs-mode processed_logprobs`` (after temperature, as :class:`TransformersPolicy` reports them).
    With ``sampling.seed`` set, prompt ``k`` of a batch gets seed ``seed + k``, so equal prompts (GRPO groups)
    still get different samples, reproducibly.

    A :class:`~agentenv.policy.TokenPolicy`: :func:`~agentenv.rollout.play_episode` plays it turn by turn, in token
    mode when it has a ``tokenizer`` (to build the chat format), else in chat mode (any server, text only).
    """

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, sampling: Sampling | None = None,
        stop_token_ids: Sequence[int] | None = None, tokenizer: Any = None, allow_retokenize: bool = False,
        concurrency: int = 8, retries: int = 3, backoff: float = 0.5, timeout: float = 300.0,
    ):  # fmt: skip
        if allow_retokenize and tokenizer is None:
            raise ConfigError("allow_retokenize=True needs tokenizer= to re-encode the server's text")
        if stop_token_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            stop_token_ids = [eos] if eos is not None else []
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in stop_token_ids):
            raise ConfigError(f"stop_token_ids={list(stop_token_ids)!r} must be non-negative token ids")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.http = OpenAIClient(
            base_url, api_key=key, concurrency=concurrency, retries=retries, backoff=backoff, timeout=timeout
        )
        self.model = model
        self.name = f"openai:{self.http.base_url}#{model}"
        self.sampling = sampling or Sampling()
        self.stop_token_ids = list(stop_token_ids)
        self.tokenizer, self.allow_retokenize = tokenizer, allow_retokenize
        self._warned_retokenize = False

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self.http.base_url!r}, model={self.model!r})"

    # ---- token mode -------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        """One :class:`Generation` per token-id prompt; usable with or without an event loop in this thread."""
        return run_sync(self.agenerate(prompts, sampling))

    async def agenerate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        sampling = sampling or self.sampling
        if not prompts:
            return []
        async with self.http.session() as session:
            results = await asyncio.gather(
                *(self._complete(session, list(p), sampling, k) for k, p in enumerate(prompts)),
                return_exceptions=True,  # a ConfigError is raised once every request has finished
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    async def _complete(self, session: Any, prompt: list[int], sampling: Sampling, k: int) -> Generation:
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt, **_sampling_fields(sampling, k), "logprobs": 1,
            "return_tokens_as_token_ids": True,
        }  # fmt: skip
        if self.stop_token_ids:
            body["stop_token_ids"] = self.stop_token_ids
        try:
            data = await self.http.post(session, "/completions", body)
            return self._from_completion(data["choices"][0])
        except ConfigError:
            raise
        except Exception as e:  # one failed request fails its prompt, not the batch
            return Generation([], finish_reason="error", error=f"{type(e).__name__}: {e}")

    def _from_completion(self, choice: dict[str, Any]) -> Generation:
        text, reason = choice.get("text") or "", choice.get("finish_reason")
        if reason not in ("stop", "length"):
            return Generation([], finish_reason="error", text=text, error=f"the server finished with {reason!r}")
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        read = _read_token_ids(logprobs)
        if read is not None and (read[0] or not text):
            return Generation(read[0], read[1], reason, text)
        if not self.allow_retokenize:
            example = f" (tokens like {tokens[:3]!r})" if tokens else " (no logprobs tokens)"
            raise ConfigError(
                f"token mode needs a vLLM/SGLang-compatible server that returns token ids "
                f"(return_tokens_as_token_ids) or llama.cpp's server (logprobs.content[].id); {self.http.base_url} "
                f"returned none{example}. Use chat() (chat mode) to evaluate with this server, or pass tokenizer= and "
                "allow_retokenize=True to re-encode its text (not token-exact: do not train on it)."
            )
        if not self._warned_retokenize:
            warnings.warn(
                f"{self!r}: the server returns no token ids; re-encoding its text (not token-exact)", stacklevel=2
            )
            self._warned_retokenize = True
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if reason == "stop" and self.stop_token_ids:
            ids.append(self.stop_token_ids[0])
        return Generation(ids, [], reason, text)

    # ---- turn by turn (play_episode) ------------------------------------------------------------------------
    def start(self, env: TextEnv, observation: str, info: dict[str, Any]) -> None:
        """Begin an episode: in token mode with a ``tokenizer``, else in chat mode (messages, text only)."""
        self._messages: list[dict] | None = None
        if self.tokenizer is not None:
            return super().start(env, observation, info)
        instructions = info.get("instructions", env.instructions)
        self._messages = [{"role": "system", "content": instructions}, {"role": "user", "content": observation}]

    def act(self, observation: str, info: dict[str, Any]) -> str:
        assert hasattr(self, "_messages"), "call start() first"
        if self._messages is None:
            return super().act(observation, info)
        if self._messages[-1]["role"] == "assistant":
            self._messages.append({"role": "user", "content": observation})
        [reply] = self.chat([self._messages])
        if reply.finish_reason == "error":
            raise RuntimeError(f"generation failed: {reply.error}")
        self._messages.append({"role": "assistant", "content": reply.text})
        return reply.text

    # ---- chat mode --------------------------------------------------------------------------------------------
    def chat(self, conversations: Sequence[Sequence[dict]], sampling: Sampling | None = None) -> list[Generation]:
        """The next assistant message per conversation: its ``text``, finish reason, and error where the request
        failed; ``token_ids`` are empty (chat mode has none)."""
        return run_sync(self.achat(conversations, sampling))

    async def achat(
        self, conversations: Sequence[Sequence[dict]], sampling: Sampling | None = None
    ) -> list[Generation]:
        sampling = sampling or self.sampling
        if not conversations:
            return []
        async with self.http.session() as session:
            return list(
                await asyncio.gather(
                    *(self._chat_one(session, list(c), sampling, k) for k, c in enumerate(conversations))
                )
            )

    async def _chat_one(self, session: Any, messages: list[dict], sampling: Sampling, k: int) -> Generation:
        body = {"model": self.model, "messages": messages, **_sampling_fields(sampling, k)}
        try:
            choice = (await self.http.post(session, "/chat/completions", body))["choices"][0]
            text = str(choice["message"].get("content") or "")
        except Exception as e:
            return Generation([], finish_reason="error", error=f"{type(e).__name__}: {e}")
        return Generation([], finish_reason="length" if choice.get("finish_reason") == "length" else "stop", text=text)


def _sampling_fields(sampling: Sampling, k: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p,
    }  # fmt: skip
    if sampling.seed is not None:
        fields["seed"] = sampling.seed + k
    return fields


def _read_token_ids(logprobs: dict[str, Any]) -> tuple[list[int], list[float]] | None:
    """The generated ids and their log-probabilities from a completion's ``logprobs``: vLLM's form (``tokens`` spelled
    ``"token_id:123"``, ``token_logprobs``) or llama.cpp's (``content[].{id, logprob}``); None when it has neither.
    Log-probabilities are ``[]`` when the server gave not one per id (missing ones count as 0.0)."""
    content = logprobs.get("content")
    if isinstance(content, list) and content and all(isinstance(c, dict) and _is_id(c.get("id")) for c in content):
        ids = [int(c["id"]) for c in content]
        values = [c.get("logprob") for c in content]
    else:
        tokens = logprobs.get("tokens") or []
        parsed = _parse_token_ids(tokens)
        if parsed is None:
            return None
        ids, values = parsed, logprobs.get("token_logprobs") or []
    chosen = [0.0 if lp is None else float(lp) for lp in values] if len(values) == len(ids) else []
    return ids, chosen


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_token_ids(tokens: Sequence[Any]) -> list[int] | None:
    """The ids of ``"token_id:123"`` tokens, or None when any token is not spelled that way."""
    ids = []
    for token in tokens:
        if not isinstance(token, str) or not token.startswith(TOKEN_ID_PREFIX):
            return None
        try:
            ids.append(int(token[len(TOKEN_ID_PREFIX) :]))
        except ValueError:
            return None
    return ids


__all__ = ["OpenAIPolicy"]
