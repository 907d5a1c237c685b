"""Judge backends: a local causal LM (:class:`LocalLM`) or any OpenAI-compatible server (:class:`OpenAIServer`)."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from agentenv.errors import ConfigError, check_range
from agentenv.http import OpenAIClient, run_sync
from agentenv.rewards.judges.templates import Chat
from agentenv.rewards.judges.verdicts import NO_WORDS, YES_WORDS, Verdict, verdict_from_top_logprobs


class JudgeBackend(Protocol):
    """What judges need from a model: P(yes) for chats, and short sampled completions for critiques."""

    context_tokens: int

    def count_tokens(self, chat: Chat) -> int: ...

    def p_yes(self, chats: Sequence[Chat]) -> list[Verdict]: ...

    def generate(
        self, chats: Sequence[Chat], *, n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[str]]: ...


class LocalLM:
    """A local causal LM as judge backend: batched forward passes with left padding, loaded on first use.

    ``model`` is a name for :func:`agentenv.models.load_model` (``"default"``, a folder, a hub id) or a
    ``(model, tokenizer)`` pair. Calls are serialised by a lock (one forward at a time uses all torch threads).
    """

    def __init__(
        self, model: str | tuple[Any, Any] = "default", *, batch_size: int = 8, num_threads: int | None = None,
        device: str | None = None, dtype: str | None = None,
    ):  # fmt: skip
        check_range("batch_size", batch_size, 1, integer=True)
        self.source = model if isinstance(model, str) else type(model[0]).__name__
        self.batch_size = batch_size
        self._load_kwargs = {"num_threads": num_threads, "device": device, "dtype": dtype}
        self._pair = None if isinstance(model, str) else tuple(model)
        self._lock = threading.RLock()
        self._ids: tuple[list[int], list[int]] | None = None

    def __repr__(self) -> str:
        return f"LocalLM({self.source!r}, batch_size={self.batch_size})"

    # -- loading
    def load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._pair is None:
                from agentenv.models import load_model

                self._pair = load_model(self.source, **self._load_kwargs)
            return self._pair

    @property
    def model(self) -> Any:
        return self.load()[0]

    @property
    def tokenizer(self) -> Any:
        return self.load()[1]

    @property
    def context_tokens(self) -> int:
        config = self.model.config
        limits = [getattr(config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        return min([n for n in limits if isinstance(n, int) and 0 < n < 1_000_000] or [2048])

    def answer_ids(self) -> tuple[list[int], list[int]]:
        """Token ids of the yes and no answer variants: single tokens if the tokenizer has them, else first tokens."""
        if self._ids is None:
            self._ids = _answer_ids(self.tokenizer)
        return self._ids

    # -- prompts
    def render(self, chat: Chat) -> str:
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant:"

    def encode(self, chat: Chat) -> list[int]:
        return self.tokenizer(self.render(chat), add_special_tokens=False)["input_ids"]

    def count_tokens(self, chat: Chat) -> int:
        return len(self.encode(chat))

    def _batches(self, encoded: list[list[int]]) -> list[list[int]]:
        """Indices in batches of similar length (little padding), longest first."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def _padded(self, rows: list[list[int]]) -> tuple[Any, Any]:
        import torch

        pad = self._pad_id()
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return ids, mask

    # -- the two calls judges make
    def p_yes(self, chats: Sequence[Chat]) -> list[Verdict]:
        import torch

        if not chats:
            return []
        with self._lock:
            limit = self.context_tokens
            encoded, cut = [], []
            for chat in chats:
                ids = self.encode(chat)
                cut.append(max(0, len(ids) - limit))
                encoded.append(ids[-limit:])
            yes, no = (torch.tensor(x) for x in self.answer_ids())
            out: list[Verdict | None] = [None] * len(encoded)
            for batch in self._batches(encoded):
                ids, mask = self._padded([encoded[i] for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                with torch.inference_mode():
                    logits = self.model(
                        input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                        position_ids=positions.to(self.model.device), logits_to_keep=1,
                    ).logits[:, -1, :].float().cpu()  # fmt: skip
                logp = logits.log_softmax(-1)
                log_yes, log_no = logp[:, yes].logsumexp(-1), logp[:, no].logsumexp(-1)
                p_yes = torch.sigmoid(log_yes - log_no)
                mass = log_yes.exp() + log_no.exp()
                for row, i in enumerate(batch):
                    out[i] = Verdict(float(p_yes[row]), float(mass[row]), truncated_tokens=cut[i])
            return out  # type: ignore[return-value]

    def generate(
        self, chats: Sequence[Chat], *, n: int = 1, max_new_tokens: int = 48, temperature: float = 0.7,
        seed: int = 0,
    ) -> list[list[str]]:  # fmt: skip
        """``n`` sampled completions per chat (greedy when ``temperature == 0``); the caller's RNG is left alone."""
        import torch

        if not chats:
            return []
        with self._lock:
            model, tokenizer = self.load()
            limit = max(1, self.context_tokens - max_new_tokens)
            encoded = [self.encode(chat)[-limit:] for chat in chats]
            out: list[list[str]] = [[] for _ in chats]
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95, "top_k": 0}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for batch in self._batches(encoded):
                    ids, mask = self._padded([encoded[i] for i in batch])
                    with torch.inference_mode():
                        generated = model.generate(
                            input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                            max_new_tokens=max_new_tokens, num_return_sequences=n,
                            pad_token_id=self._pad_id(),
                            **(sampling if temperature > 0 else {"do_sample": False}),
                        )  # fmt: skip
                    texts = tokenizer.batch_decode(generated[:, ids.shape[1] :], skip_special_tokens=True)
                    for row, i in enumerate(batch):
                        out[i] = [t.strip() for t in texts[row * n : (row + 1) * n]]
            return out


def _answer_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    def ids(words: Sequence[str]) -> tuple[set[int], set[int]]:
        single, first = set(), set()
        for word in words:
            for variant in (word, " " + word):
                tokens = tokenizer.encode(variant, add_special_tokens=False)
                if len(tokens) == 1:
                    single.add(tokens[0])
                elif tokens:
                    first.add(tokens[0])
        return single, first

    (yes_single, yes_first), (no_single, no_first) = ids(YES_WORDS), ids(NO_WORDS)
    yes = yes_single or (yes_first - no_first - no_single)
    no = no_single or (no_first - yes_first - yes_single)
    if not yes or not no:
        raise ConfigError("the judge's tokenizer has no tokens that tell 'Yes' from 'No' apart")
    return sorted(yes), sorted(no)


_SHARED: dict[str, LocalLM] = {}
_SHARED_LOCK = threading.Lock()


def shared_local_lm(name: str = "default") -> LocalLM:
    """One :class:`LocalLM` per model name per process, so several judges share one copy of the weights."""
    with _SHARED_LOCK:
        if name not in _SHARED:
            _SHARED[name] = LocalLM(name)
        return _SHARED[name]


# Set by Judge.abatch: the caller's event loop, where HTTP requests then run (concurrency shared across calls).
_CALLER_LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "agentenv_judge_loop", default=None
)


class OpenAIServer:
    """Any OpenAI-compatible chat-completions server as judge backend (vLLM, llama.cpp, TGI, hosted APIs).

    P(yes) comes from ``top_logprobs`` of the first generated token. Requests run concurrently (at most
    ``concurrency`` in flight per event loop) and retry transport errors, 429 and 5xx with exponential backoff.
    Token counts are estimated (4 characters a token), so long prompts are shortened approximately.
    """

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, concurrency: int = 8, retries: int = 3,
        backoff: float = 0.5, timeout: float = 60.0, top_logprobs: int = 20, context_tokens: int = 8192,
    ):  # fmt: skip
        self.http = OpenAIClient(
            base_url, api_key=api_key, concurrency=concurrency, retries=retries, backoff=backoff, timeout=timeout
        )
        check_range("top_logprobs", top_logprobs, 1, 20, integer=True)
        self.url = self.http.base_url + "/chat/completions"
        self.model = model
        self.top_logprobs, self.context_tokens = top_logprobs, context_tokens

    def __repr__(self) -> str:
        return f"OpenAIServer({self.url!r}, model={self.model!r})"

    def count_tokens(self, chat: Chat) -> int:
        return sum(len(m["content"]) // 4 + 4 for m in chat)

    # -- async API
    async def ap_yes(self, chats: Sequence[Chat]) -> list[Verdict]:
        if not chats:
            return []
        async with self.http.session() as client:
            return list(await asyncio.gather(*(self._p_yes_one(client, chat) for chat in chats)))

    async def agenerate(
        self, chats: Sequence[Chat], *, n: int = 1, max_new_tokens: int = 48, temperature: float = 0.7, seed: int = 0
    ) -> list[list[str]]:
        if not chats:
            return []
        async with self.http.session() as client:
            return list(
                await asyncio.gather(
                    *(self._generate_one(client, chat, n, max_new_tokens, temperature, seed) for chat in chats)
                )
            )

    # -- sync API (what score_batch calls)
    def p_yes(self, chats: Sequence[Chat]) -> list[Verdict]:
        return run_sync(self.ap_yes(chats), _CALLER_LOOP.get())

    def generate(
        self, chats: Sequence[Chat], *, n: int = 1, max_new_tokens: int = 48, temperature: float = 0.7, seed: int = 0
    ) -> list[list[str]]:
        return run_sync(
            self.agenerate(chats, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
            _CALLER_LOOP.get(),
        )

    # -- requests
    async def _p_yes_one(self, client: Any, chat: Chat) -> Verdict:
        body = {
            "model": self.model, "messages": chat, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }  # fmt: skip
        try:
            data = await self.http.post(client, "/chat/completions", body)
            top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            return verdict_from_top_logprobs({t["token"]: float(t["logprob"]) for t in top})
        except Exception as e:  # one failed request is one unscored sample, not a failed batch
            return Verdict(math.nan, 0.0, error=f"{type(e).__name__}: {e}")

    async def _generate_one(
        self, client: Any, chat: Chat, n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        body = {
            "model": self.model, "messages": chat, "max_tokens": max_new_tokens, "temperature": temperature,
            "n": n, "seed": seed,
        }  # fmt: skip
        try:
            data = await self.http.post(client, "/chat/completions", body)
            return [str(c["message"]["content"] or "").strip() for c in data["choices"]][:n]
        except Exception:  # a missing critique leaves a plain verdict for that sample
            return []


def as_backend(backend: str | tuple[Any, Any] | JudgeBackend | None) -> JudgeBackend:
    """``None``/a name → the process-wide :class:`LocalLM` for it; a ``(model, tokenizer)`` pair → a new one."""
    if backend is None:
        return shared_local_lm("default")
    if isinstance(backend, str):
        return shared_local_lm(backend)
    if isinstance(backend, tuple) and len(backend) == 2:
        return LocalLM(backend)
    if all(hasattr(backend, a) for a in ("p_yes", "generate", "count_tokens")):
        return backend
    raise ConfigError(
        f"backend={backend!r} must be a model name, a (model, tokenizer) pair, a LocalLM or an OpenAIServer"
    )
