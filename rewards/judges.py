"""Generative judges: rewards read from a language model's probability of answering "Yes".

* :class:`PointwiseJudge` — P("Yes") that a response is correct (RewardDance-style generative reward), optionally
  with principles (given, or written by the judge per question) and k sampled critiques whose verdicts are averaged
  or voted (DeepSeek-GRM).
* :class:`PairwiseJudge` — P(A better than B), scored in both orders and averaged to cancel position bias.
* :class:`GroupJudge` — RULER-style: each response judged with the whole group of responses to its prompt in context.
* :class:`ProcessJudge` — P("Yes") that each assistant step of a conversation is correct and useful (GenPRM-style).

``p_yes = sum P(yes variants) / (sum P(yes variants) + sum P(no variants))`` at the first answer token, from the
logits of a local causal LM (:class:`LocalLM`, default: SmolLM2-135M-Instruct, offline) or from the top logprobs of
any OpenAI-compatible server (:class:`OpenAIServer`). Prompts are YAML data in ``prompts/`` (:class:`PromptTemplate`).
Prompts longer than the judge's context are shortened in the middle of their longest fields, noted in ``details``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml

from agentenv.errors import ConfigError, check_choice, check_range, closest
from agentenv.http import OpenAIClient, run_sync
from agentenv.rewards.base import Reward, Sample, Score

Chat = list[dict[str, str]]

#: Answer words whose first-token probability counts as "yes" / "no" (case and a leading space vary by tokenizer).
YES_WORDS = ("Yes", "yes", "YES")
NO_WORDS = ("No", "no", "NO")
TEMPLATE_KEYS = {"name", "description", "system", "user", "blocks", "item", "verdict"}


# ---- prompt templates -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTemplate:
    """A judge prompt as data: ``system`` and ``user`` messages with ``{field}`` slots (``str.format`` syntax).

    ``blocks`` wrap optional fields: ``{reference}`` in ``user`` becomes ``blocks["reference"]`` filled in when the
    sample has a reference, and nothing when it has none. ``item`` renders one member of a list (group responses,
    conversation turns); ``verdict`` is the follow-up question after a critique.
    """

    name: str
    user: str
    system: str = ""
    blocks: Mapping[str, str] = field(default_factory=dict)
    item: str = ""
    verdict: str = ""
    description: str = ""

    @classmethod
    def load(cls, name_or_path: str | Path) -> PromptTemplate:
        """A bundled template by name (see :func:`available_templates`) or a YAML file."""
        path = Path(name_or_path)
        if isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or path.is_file():
            if not path.is_file():
                raise ConfigError(f"prompt template file {str(path)!r} does not exist")
            text, source = path.read_text(), str(path)
        else:
            bundled = resources.files("agentenv.rewards") / "prompts" / f"{name_or_path}.yaml"
            if not bundled.is_file():
                names = available_templates()
                hint = closest(str(name_or_path), names, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(f"prompt template {name_or_path!r} is unknown; bundled: {names}.{did_you_mean}")
            text, source = bundled.read_text(), f"{name_or_path}.yaml"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"prompt template {source}: not valid YAML: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("user"), str):
            raise ConfigError(f"prompt template {source}: needs a mapping with a 'user' message template")
        unknown = set(data) - TEMPLATE_KEYS
        if unknown:
            raise ConfigError(
                f"prompt template {source}: unknown keys {sorted(unknown)}; allowed: {sorted(TEMPLATE_KEYS)}"
            )
        data.setdefault("name", path.stem)
        data["blocks"] = data.get("blocks") or {}
        if not isinstance(data["blocks"], dict) or not all(isinstance(v, str) for v in data["blocks"].values()):
            raise ConfigError(f"prompt template {source}: 'blocks' must map field names to text")
        for key in TEMPLATE_KEYS - {"blocks"}:
            if data.get(key) is None:
                data.pop(key, None)
            elif not isinstance(data[key], str):
                raise ConfigError(f"prompt template {source}: {key!r} must be text")
        return cls(**data)

    def fields(self) -> set[str]:
        return {f for text in (self.system, self.user) for _, f, _, _ in string.Formatter().parse(text) if f}

    def check(self, kind: str, required: frozenset[str], allowed: frozenset[str], needs: Sequence[str] = ()) -> None:
        """Fail fast when the template does not fit the judge that uses it."""
        have = self.fields()
        missing, unknown = required - have, have - allowed - set(self.blocks)
        if missing or unknown:
            raise ConfigError(
                f"prompt template {self.name!r} does not fit the {kind} judge: "
                + (f"missing fields {sorted(missing)}; " if missing else "")
                + (f"unknown fields {sorted(unknown)}; " if unknown else "")
                + f"it may use {sorted(allowed)}"
            )
        for key in needs:
            if not getattr(self, key):
                raise ConfigError(f"prompt template {self.name!r} needs a {key!r} entry for the {kind} judge")

    def render(self, **values: str) -> Chat:
        """The chat messages, with every optional block left out whose field is empty."""
        filled = dict(values)
        for name, block in self.blocks.items():
            filled[name] = block.format(**values) if values.get(name) else ""
        chat = [{"role": "user", "content": self.user.format(**filled)}]
        if self.system:
            chat.insert(0, {"role": "system", "content": self.system.format(**filled)})
        return chat


def available_templates() -> list[str]:
    folder = resources.files("agentenv.rewards") / "prompts"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def as_template(template: str | Path | PromptTemplate) -> PromptTemplate:
    return template if isinstance(template, PromptTemplate) else PromptTemplate.load(template)


# ---- backends ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A judge model's answer to one yes/no prompt: ``p_yes`` among the yes/no answers, ``mass`` = P(yes or no)."""

    p_yes: float
    mass: float = 1.0
    error: str = ""  # set when there is no verdict (an HTTP failure, no yes/no token among the top logprobs)
    truncated_tokens: int = 0  # prompt tokens cut from the left when even shortened fields did not fit


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


def verdict_from_top_logprobs(top: Mapping[str, float]) -> Verdict:
    """P(yes) among the yes/no tokens of one position's top logprobs (token text → logprob)."""
    yes = sum(math.exp(lp) for tok, lp in top.items() if _word(tok) in {w.lower() for w in YES_WORDS})
    no = sum(math.exp(lp) for tok, lp in top.items() if _word(tok) in {w.lower() for w in NO_WORDS})
    if yes + no <= 0:
        return Verdict(math.nan, 0.0, error="no Yes/No token among the top logprobs")
    return Verdict(yes / (yes + no), yes + no)


def _word(token: str) -> str:
    return token.strip().strip(".,:;!\"'").lower()


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


# ---- fitting prompts into the context ---------------------------------------------------------------------------

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


# ---- judges -----------------------------------------------------------------------------------------------------


class Judge(Reward):
    """Shared by the judges: a backend, a prompt template, principles and the context budget."""

    kind = ""
    required_fields: ClassVar[frozenset[str]] = frozenset()
    allowed_fields: ClassVar[frozenset[str]] = frozenset()
    template_needs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate, principles: Sequence[str] = (),
        max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__()
        self.backend = as_backend(backend)
        self.template = as_template(template)
        self.template.check(self.kind, self.required_fields, self.allowed_fields, self.template_needs)
        if isinstance(principles, str):
            principles = [principles]
        self.principles = tuple(str(p) for p in principles)
        if max_prompt_tokens is not None:
            check_range("max_prompt_tokens", max_prompt_tokens, 16, integer=True)
        self.max_prompt_tokens = max_prompt_tokens

    def extra_repr(self) -> str:
        return f"{self.backend!r}, template={self.template.name!r}"

    async def abatch(self, samples: Any, **context: Any) -> list[Score]:
        # The model calls run in a worker thread (see Reward.abatch); HTTP requests come back to this loop.
        token = _CALLER_LOOP.set(asyncio.get_running_loop())
        try:
            return await super().abatch(samples, **context)
        finally:
            _CALLER_LOOP.reset(token)

    def budget(self, reserve: int = 1) -> int:
        limit = self.backend.context_tokens - reserve
        return min(limit, self.max_prompt_tokens) if self.max_prompt_tokens else limit

    def principles_text(self) -> str:
        return "\n".join(f"- {p}" for p in self.principles)

    def fit(self, render: Callable[[dict[str, str]], Chat], fields: dict[str, str], **kw: Any) -> Fitted:
        return fit(render, fields, self.backend.count_tokens, self.budget(kw.pop("reserve", 1)), **kw)


def _details(verdict: Verdict, fitted: Fitted) -> dict[str, Any]:
    details: dict[str, Any] = {"mass": verdict.mass}
    if fitted.truncated:
        details["truncated"] = fitted.truncated
    if verdict.truncated_tokens:
        details["truncated_tokens"] = verdict.truncated_tokens
    return details


def _empty(sample: Sample) -> Score | None:
    if not sample.response.strip():
        return Score(0.0, {}, reason="empty response")
    return None


AGGREGATES = ("mean", "vote")


class PointwiseJudge(Judge):
    """P("Yes") that the response answers the prompt correctly (given the reference and principles, if any).

    ``threshold`` turns the value into 0/1 (``p_yes >= threshold``); ``p_yes`` stays in the parts. With
    ``critiques=k`` the judge first samples k short critiques, reads P("Yes") after each, and aggregates them by
    ``mean`` or ``vote`` (the share of critiques whose verdict is yes) — DeepSeek-GRM's sampling-and-voting.
    """

    kind = "pointwise"
    required_fields = frozenset({"prompt", "response"})
    allowed_fields = frozenset({"prompt", "response", "reference", "principles"})

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "pointwise",
        principles: Sequence[str] = (), threshold: float | None = None, critiques: int = 0,
        critique_template: str | Path | PromptTemplate = "critique", aggregate: str = "mean",
        max_new_tokens: int = 40, temperature: float = 0.7, seed: int = 0, max_prompt_tokens: int | None = None,
        generate_principles: int = 0, principles_template: str | Path | PromptTemplate = "principles",
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_range("generate_principles", generate_principles, 0, 20, integer=True)
        self.generate_principles = generate_principles
        self.principles_template = as_template(principles_template)
        if generate_principles:
            self.principles_template.check(
                "principle generation", frozenset({"prompt"}), frozenset({"prompt", "reference", "count"})
            )
        self._generated: dict[tuple[str, str], tuple[str, ...]] = {}
        if threshold is not None:
            check_range("threshold", threshold, 0, 1)
        check_range("critiques", critiques, 0, integer=True)
        check_choice("aggregate", aggregate, AGGREGATES)
        check_range("max_new_tokens", max_new_tokens, 1, integer=True)
        check_range("temperature", temperature, 0)
        self.threshold, self.critiques, self.aggregate = threshold, critiques, aggregate
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.critique_template = as_template(critique_template)
        if critiques:
            self.critique_template.check("critique", self.required_fields, self.allowed_fields, ("verdict",))

    def extra_repr(self) -> str:
        extra = f", critiques={self.critiques}, aggregate={self.aggregate!r}" if self.critiques else ""
        extra += f", generate_principles={self.generate_principles}" if self.generate_principles else ""
        return super().extra_repr() + (f", threshold={self.threshold:g}" if self.threshold is not None else "") + extra

    def _fields(self, sample: Sample) -> dict[str, str]:
        principles = (*self.principles, *self._generated.get((sample.prompt, sample.reference or ""), ()))
        return {"prompt": sample.prompt, "response": sample.response, "reference": sample.reference or "",
                "principles": "\n".join(f"- {p}" for p in principles)}  # fmt: skip

    def _render(self, template: PromptTemplate) -> Callable[[dict[str, str]], Chat]:
        return lambda f: template.render(**f)

    def principles_for(self, samples: Sequence[Sample]) -> list[tuple[str, ...]]:
        """The principles the judge wrote for each sample's question (DeepSeek-GRM): generated once per distinct
        (prompt, reference), greedily, at most ``generate_principles`` each; given ``principles`` come first."""
        keys = [(s.prompt, s.reference or "") for s in samples]
        todo = list(dict.fromkeys(k for k in keys if k not in self._generated))
        if todo and self.generate_principles:
            from agentenv.rewards.nuggets import bullet_lines

            chats = [
                self.principles_template.render(prompt=p, reference=r, count=str(self.generate_principles))
                for p, r in todo
            ]
            outputs = self.backend.generate(chats, n=1, max_new_tokens=24 * self.generate_principles, temperature=0.0)
            for key, texts in zip(todo, outputs, strict=True):
                self._generated[key] = tuple(bullet_lines(texts[0] if texts else "", limit=self.generate_principles))
        return [(*self.principles, *self._generated.get(k, ())) for k in keys]

    def _value(self, p_yes: float) -> float:
        return p_yes if self.threshold is None else float(p_yes >= self.threshold)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        todo = [i for i, s in enumerate(out) if s is None]
        if self.generate_principles:
            self.principles_for([samples[i] for i in todo])
        if self.critiques:
            scored = self._with_critiques([samples[i] for i in todo])
        else:
            fitted = [self.fit(self._render(self.template), self._fields(samples[i])) for i in todo]
            verdicts = self.backend.p_yes([f.chat for f in fitted])
            scored = [self._score(v, f) for v, f in zip(verdicts, fitted, strict=True)]
        for i, score in zip(todo, scored, strict=True):
            out[i] = score
        return out  # type: ignore[return-value]

    def _score(self, verdict: Verdict, fitted: Fitted) -> Score:
        if verdict.error:
            return Score(0.0, {}, reason=f"judge gave no verdict: {verdict.error}")
        return Score(self._value(verdict.p_yes), {"p_yes": verdict.p_yes}, details=_details(verdict, fitted))

    def _with_critiques(self, samples: Sequence[Sample]) -> list[Score]:
        render = self._render(self.critique_template)
        fitted = [self.fit(render, self._fields(s), reserve=self.max_new_tokens + 64) for s in samples]
        critiques = self.backend.generate(
            [f.chat for f in fitted], n=self.critiques, max_new_tokens=self.max_new_tokens,
            temperature=self.temperature, seed=self.seed,
        )  # fmt: skip
        follow_ups, owners = [], []
        for i, (f, texts) in enumerate(zip(fitted, critiques, strict=True)):
            for text in texts:
                follow_ups.append(
                    [
                        *f.chat,
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": self.critique_template.verdict},
                    ]
                )
                owners.append(i)
        verdicts = self.backend.p_yes(follow_ups) if follow_ups else []
        per_sample: list[list[Verdict]] = [[] for _ in samples]
        for owner, verdict in zip(owners, verdicts, strict=True):
            per_sample[owner].append(verdict)
        out = []
        for f, texts, got in zip(fitted, critiques, per_sample, strict=True):
            ok = [v for v in got if not v.error]
            if not ok:
                why = got[0].error if got else "no critique was generated"
                out.append(Score(0.0, {}, reason=f"judge gave no verdict: {why}"))
                continue
            mean = sum(v.p_yes for v in ok) / len(ok)
            vote = sum(v.p_yes >= 0.5 for v in ok) / len(ok)
            parts = {"p_yes": mean, "vote": vote, **{f"critique.{k}": v.p_yes for k, v in enumerate(ok)}}
            details = {"critiques": texts, "mass": sum(v.mass for v in ok) / len(ok)}
            if f.truncated:
                details["truncated"] = f.truncated
            value = self._value(mean) if self.aggregate == "mean" else self._value(vote)
            out.append(Score(value, parts, details=details))
        return out


def _as_response_sample(x: Any, what: str) -> Sample:
    if isinstance(x, Sample):
        return x
    if isinstance(x, str):
        return Sample(response=x)
    if isinstance(x, Mapping) and isinstance(x.get("response"), str):
        return Sample(**{k: v for k, v in x.items() if k in Sample.__dataclass_fields__})
    raise TypeError(
        f"{what} must be a Sample, a response string or a mapping with a 'response', got {type(x).__name__}"
    )


IDENTICAL = Score(0.5, {"preference": 0.5}, reason="identical responses")


class PairwiseJudge(Judge):
    """P(response A is better than response B), with the position swap that cancels order bias.

    Both orders are scored in one batch and combined as ``0.5 + (P(yes | A, B) - P(yes | B, A)) / 2``, computed for
    a canonical order of the pair, so ``compare(a, b) + compare(b, a) == 1`` exactly (for a deterministic backend)
    and ``compare(a, a) == 0.5`` without a model call.
    As a reward, it scores ``sample.response`` against ``sample.metadata["baseline"]`` (a response or a Sample).
    """

    kind = "pairwise"
    required_fields = frozenset({"prompt", "response_a", "response_b"})
    allowed_fields = frozenset({"prompt", "response_a", "response_b", "reference", "principles"})

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "pairwise",
        principles: Sequence[str] = (), max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)

    def compare(self, a: Sample | str, b: Sample | str) -> float:
        """P(a is better than b) for the same prompt (taken from whichever sample has one)."""
        return self.compare_batch([(a, b)])[0].value

    def compare_batch(self, pairs: Sequence[tuple[Sample | str, Sample | str]]) -> list[Score]:
        chats: list[Chat] = []
        jobs: list[tuple[bool, list[Fitted]] | None] = []  # per pair: (flipped, its two fits), None if identical
        for a, b in ((_as_response_sample(a, "a"), _as_response_sample(b, "b")) for a, b in pairs):
            first, second = (a, b) if (a.response, a.prompt) <= (b.response, b.prompt) else (b, a)
            if first.response == second.response:
                jobs.append(None)  # the same answer in both slots: 0.5 by symmetry, no model call needed
                continue
            prompt, reference = first.prompt or second.prompt, first.reference or second.reference or ""
            fits = []
            for x, y in ((first, second), (second, first)):
                fields = {"prompt": prompt, "response_a": x.response, "response_b": y.response, "reference": reference}
                fits.append(self.fit(lambda f: self.template.render(principles=self.principles_text(), **f), fields))
            chats.extend(f.chat for f in fits)
            jobs.append((first is not a, fits))
        verdicts = iter(self.backend.p_yes(chats))
        return [self._preference(job, next(verdicts), next(verdicts)) if job else IDENTICAL for job in jobs]

    @staticmethod
    def _preference(job: tuple[bool, list[Fitted]], forward: Verdict, backward: Verdict) -> Score:
        """``forward``: P(yes) with the canonical first response as A; ``backward``: with it as B."""
        flipped, fits = job
        if forward.error or backward.error:
            return Score(0.0, {}, reason=f"judge gave no verdict: {forward.error or backward.error}")
        first_wins = 0.5 + (forward.p_yes - backward.p_yes) / 2
        preference = 1.0 - first_wins if flipped else first_wins
        p_ab, p_ba = (backward.p_yes, forward.p_yes) if flipped else (forward.p_yes, backward.p_yes)
        details: dict[str, Any] = {"position_bias": (p_ab + p_ba) / 2 - 0.5}
        truncated = {**fits[0].truncated, **fits[1].truncated}
        if truncated:
            details["truncated"] = truncated
        return Score(preference, {"preference": preference, "p_yes.ab": p_ab, "p_yes.ba": p_ba}, details=details)

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        pairs, where = [], []
        for i, s in enumerate(samples):
            if out[i] is not None:
                continue
            baseline = s.metadata.get("baseline") if isinstance(s.metadata, Mapping) else None
            try:
                pairs.append((s, _as_response_sample(baseline, "metadata['baseline']")))
                where.append(i)
            except TypeError as e:
                out[i] = Score(0.0, {}, reason=f"no baseline to compare with: {e}")
        for i, score in zip(where, self.compare_batch(pairs) if pairs else [], strict=True):
            out[i] = score
        return out  # type: ignore[return-value]


GROUP_NORMALIZE = ("none", "minmax", "rank")


class GroupJudge(Judge):
    """RULER-style relative scores: every response is judged with all responses to the same prompt in context.

    Samples are grouped by ``metadata["group_id"]`` when present, else by prompt. For each member the judge lists
    the group with that member first (so position bias hits every member alike) and reads P("Yes") that it is the
    best; the prompt and reference shown are the first member's. ``normalize``: ``none`` (the raw P("Yes"), in
    [0, 1]), ``minmax`` (best 1, worst 0 within a group) or ``rank`` (1 for the best down to 0 for the worst, ties
    averaged). Cost: n prompts of n responses each, per group.
    """

    kind = "group"
    required_fields = frozenset({"prompt", "responses"})
    allowed_fields = frozenset({"prompt", "responses", "count", "reference", "principles"})
    template_needs = ("item",)

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "group", principles: Sequence[str] = (),
        normalize: str = "none", max_group: int = 16, max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_choice("normalize", normalize, GROUP_NORMALIZE)
        check_range("max_group", max_group, 1, integer=True)
        self.normalize, self.max_group = normalize, max_group

    def groups(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Indices of the samples judged together, at most ``max_group`` each, in order of first appearance."""
        by_key: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            meta = s.metadata if isinstance(s.metadata, Mapping) else {}
            key = f"id:{meta['group_id']}" if meta.get("group_id") is not None else f"prompt:{s.prompt}"
            by_key.setdefault(key, []).append(i)
        return [g[k : k + self.max_group] for g in by_key.values() for k in range(0, len(g), self.max_group)]

    def _render(self, order: Sequence[str]) -> Callable[[dict[str, str]], Chat]:
        def render(f: dict[str, str]) -> Chat:
            listing = "".join(
                self.template.item.format(index=k + 1, response=f[f"response.{k}"]) for k in range(len(order))
            )
            return self.template.render(
                prompt=f["prompt"], reference=f["reference"], principles=self.principles_text(), responses=listing,
                count=str(len(order)),
            )  # fmt: skip

        return render

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [_empty(s) for s in samples]
        chats, fits, members = [], [], []
        groups = [[i for i in g if out[i] is None] for g in self.groups(samples)]
        groups = [g for g in groups if g]
        for group in groups:
            first = samples[group[0]]
            for j in range(len(group)):
                rotated = group[j:] + group[:j]  # the member asked about is always "Response 1"
                fields = {"prompt": first.prompt, "reference": first.reference or ""}
                fields.update({f"response.{k}": samples[i].response for k, i in enumerate(rotated)})
                fitted = self.fit(self._render(rotated), fields)
                chats.append(fitted.chat)
                fits.append(fitted)
            members.append(group)
        verdicts = iter(zip(self.backend.p_yes(chats) if chats else [], fits, strict=True))
        for group in members:
            got = [next(verdicts) for _ in group]
            values = self._normalized([v.p_yes for v, _ in got])
            for i, (verdict, fitted), value in zip(group, got, values, strict=True):
                if verdict.error:
                    out[i] = Score(0.0, {}, reason=f"judge gave no verdict: {verdict.error}")
                    continue
                details = {**_details(verdict, fitted), "group": group, "group_size": len(group)}
                out[i] = Score(value, {"p_yes": verdict.p_yes}, details=details)
        return out  # type: ignore[return-value]

    def _normalized(self, p: list[float]) -> list[float]:
        ok = [x for x in p if not math.isnan(x)]
        if self.normalize == "none" or len(ok) < 2:
            return [0.0 if math.isnan(x) else x for x in p]
        if self.normalize == "minmax":
            low, high = min(ok), max(ok)
            return [0.0 if math.isnan(x) else (x - low) / (high - low) if high > low else 0.5 for x in p]
        ranks = [sum(y < x for y in ok) + 0.5 * (sum(y == x for y in ok) - 1) for x in ok]  # 0 = worst
        it = iter(r / (len(ok) - 1) for r in ranks)
        return [0.0 if math.isnan(x) else next(it) for x in p]


PROCESS_AGGREGATES = ("mean", "min")


class ProcessJudge(Judge):
    """P("Yes") that each assistant step in ``sample.messages`` is correct and useful, given what came before.

    The steps are the assistant messages, plus ``sample.response`` when it is not already the last of them.
    Parts ``step.<i>`` hold each step's P("Yes"); the value is their ``mean`` or ``min`` (one bad step sinks it).
    """

    kind = "process"
    required_fields = frozenset({"step", "history"})
    allowed_fields = frozenset({"prompt", "step", "history", "index", "reference", "principles"})
    template_needs = ("item",)

    def __init__(
        self, backend: Any = None, *, template: str | Path | PromptTemplate = "process",
        principles: Sequence[str] = (), aggregate: str = "mean", max_prompt_tokens: int | None = None,
    ):  # fmt: skip
        super().__init__(backend, template=template, principles=principles, max_prompt_tokens=max_prompt_tokens)
        check_choice("aggregate", aggregate, PROCESS_AGGREGATES)
        self.aggregate = aggregate

    @staticmethod
    def steps(sample: Sample) -> tuple[list[dict[str, str]], list[int]]:
        """The conversation as role/content text, and the positions of the assistant steps in it."""
        messages = [_as_message(m) for m in sample.messages]
        if sample.response.strip() and not (
            messages and messages[-1] == {"role": "assistant", "content": sample.response}
        ):
            messages.append({"role": "assistant", "content": sample.response})
        return messages, [k for k, m in enumerate(messages) if m["role"] == "assistant"]

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        out: list[Score | None] = [None] * len(samples)
        chats, fits, owners = [], [], []
        for i, sample in enumerate(samples):
            messages, positions = self.steps(sample)
            if not positions:
                out[i] = Score(0.0, {}, reason="no assistant steps to judge")
                continue
            prompt = sample.prompt or next((m["content"] for m in messages if m["role"] == "user"), "")
            for n, pos in enumerate(positions):
                history = "".join(self.template.item.format(**m) for m in messages[:pos]) or "(nothing yet)\n"
                fields = {"prompt": prompt, "history": history, "step": messages[pos]["content"],
                          "reference": sample.reference or ""}  # fmt: skip
                render = lambda f, n=n: self.template.render(index=str(n + 1), principles=self.principles_text(), **f)  # noqa: E731
                fitted = self.fit(render, fields, keep_tail=("history",))
                chats.append(fitted.chat)
                fits.append(fitted)
                owners.append(i)
        verdicts = self.backend.p_yes(chats) if chats else []
        per_sample: dict[int, list[tuple[Verdict, Fitted]]] = {}
        for owner, verdict, fitted in zip(owners, verdicts, fits, strict=True):
            per_sample.setdefault(owner, []).append((verdict, fitted))
        for i, got in per_sample.items():
            errors = [v.error for v, _ in got if v.error]
            if errors:
                out[i] = Score(0.0, {}, reason=f"judge gave no verdict for {len(errors)} step(s): {errors[0]}")
                continue
            p = [v.p_yes for v, _ in got]
            value = sum(p) / len(p) if self.aggregate == "mean" else min(p)
            truncated = {f"step.{k}": f.truncated for k, (_, f) in enumerate(got) if f.truncated}
            details: dict[str, Any] = {"steps": len(p)}
            if truncated:
                details["truncated"] = truncated
            out[i] = Score(value, {f"step.{k}": x for k, x in enumerate(p)}, details=details)
        return out  # type: ignore[return-value]


def _as_message(m: Any) -> dict[str, str]:
    """A message as role and plain text, whatever shape it came in (content parts, tool calls, not a dict)."""
    if not isinstance(m, Mapping):
        return {"role": "user", "content": str(m)}
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    text = "" if content is None else str(content)
    if m.get("tool_calls"):
        text += ("\n" if text else "") + "tool calls: " + json.dumps(m["tool_calls"], default=str)
    return {"role": str(m.get("role", "user")), "content": text}


__all__ = [
    "GroupJudge",
    "LocalLM",
    "OpenAIServer",
    "PairwiseJudge",
    "PointwiseJudge",
    "ProcessJudge",
    "PromptTemplate",
    "Verdict",
    "available_templates",
    "shared_local_lm",
    "verdict_from_top_logprobs",
]
