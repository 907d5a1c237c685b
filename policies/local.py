"""A policy that runs a causal LM in-process with transformers (CPU or GPU): token ids in, token ids out."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentenv.errors import check_range
from agentenv.policies.turns import TurnByTurn
from agentenv.policy import Generation, Sampling  # re-exported: their home was here

TOKEN_REPORT_EVERY = 16  # decode steps between two ``on_tokens`` calls


@dataclass
class _Entry:
    """Token ids and their KV states: one ``(heads, len(ids), head_dim)`` view per layer of a batch's buffer."""

    ids: list[int]
    keys: list[Any]
    values: list[Any]
    slots: int  # buffer slots this entry keeps alive (its share of the batch buffer it views)


class _SlotCache:
    """Preallocated KV buffers ``(batch, heads, width, head_dim)`` per layer, written in place by each forward.

    Duck-types the transformers cache (``update``): a forward over rows ``rows`` writes its new states at slots
    ``[start, end)`` (only where ``write`` is true, if set) and attends to slots ``[0, end)``. Each layer is allocated
    on first use and filled with the reused prefixes: ``fill[row] = (entry, length, offset)``.
    """

    def __init__(self, batch: int, width: int, fill: dict[int, tuple[_Entry, int, int]]):
        self.batch, self.width, self.fill = batch, width, fill
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.rows, self.start, self.end, self.write = slice(0, batch), 0, 0, None

    def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import torch

        if layer_idx == len(self.keys):
            for states, store in ((key_states, self.keys), (value_states, self.values)):
                shape = (self.batch, states.shape[1], self.width, states.shape[-1])
                store.append(torch.zeros(shape, dtype=states.dtype, device=states.device))
            for row, (entry, length, offset) in self.fill.items():
                self.keys[layer_idx][row, :, offset : offset + length] = entry.keys[layer_idx][:, :length]
                self.values[layer_idx][row, :, offset : offset + length] = entry.values[layer_idx][:, :length]
        out = []
        for states, buffer in ((key_states, self.keys[layer_idx]), (value_states, self.values[layer_idx])):
            block = buffer[self.rows, :, self.start : self.end]
            block.copy_(states if self.write is None else torch.where(self.write, states, block))
            out.append(buffer[self.rows, :, : self.end])
        return out[0], out[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.end


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists (list slices compare in C; binary search on mismatch)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if a[:mid] == b[:mid] else (low, mid)
    return low


def prefill_groups(suffixes: Sequence[int], overhead: int = 32) -> list[tuple[int, int]]:
    """Split rows sorted by suffix length (longest first) into ``[start, end)`` groups minimising padded tokens plus
    ``overhead`` tokens per forward, so a long new prompt does not pad many short suffixes to its length."""
    n = len(suffixes)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            cost = best[start] + overhead + (end - start) * suffixes[start]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append((cut[end], end))
        end = cut[end]
    return groups[::-1]


MIN_SHARED = 32  # a row copies an earlier row's prefix when that saves at least this many tokens


class TransformersPolicy(TurnByTurn):
    """Batched generation with left padding; stops each row at the end-of-turn token.

    ``generate(prompts)`` takes token-id prompts (the rollout engine keeps conversations as ids) and returns one
    :class:`Generation` per prompt, with the log-probabilities of the sampled tokens under the sampling
    distribution (logits / temperature; greedy counts as temperature 1) — what PPO-style ratios need.

    With ``prefix_cache`` (the default) the KV states of each prompt + generation are kept until the next call, and
    a prompt that shares a prefix with a kept entry (the next turn of the same episode) only prefills the rest; rows
    of one batch sharing a long prefix (one system prompt, a GRPO group) prefill it once. Results equal those without
    reuse (``prefix_cache=False``: ``model.generate``) up to float rounding, sampled tokens included for a given seed.
    Entries not extended by a call are dropped; at most ``cache_max_tokens`` buffer slots are kept. The cache is
    dropped when the weights change: in-place updates (optimizer steps, ``copy_``/``add_`` under ``no_grad``,
    ``load_state_dict``) and replaced tensors are detected, writes through ``.data`` only when they change a
    sampled element; call :meth:`clear_cache` after every update to be sure. Models with sliding-window or
    linear-attention layers, or an attention implementation other than sdpa/eager, generate without reuse.

    ``on_tokens(done, limit)``, when set, is called every ``TOKEN_REPORT_EVERY`` decode steps of a batch with the
    tokens generated so far per row and ``max_new_tokens``: a progress bar's sign of life during long generations
    (:func:`~agentenv.rollout.rollout` sets it from its ``on_tokens``).

    A :class:`~agentenv.policy.TokenPolicy`: ``start``/``act`` (:class:`~agentenv.policies.turns.TurnByTurn`) play
    :func:`~agentenv.rollout.play_episode` turns with the same ``generate``.
    """

    name = "model"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sampling: Sampling | None = None,
        *,
        batch_size: int = 8,
        prefix_cache: bool = True,
        cache_max_tokens: int = 65536,
    ):
        check_range("batch_size", batch_size, 1, integer=True)
        check_range("cache_max_tokens", cache_max_tokens, 0, integer=True)
        self.model, self.tokenizer = model, tokenizer
        self.sampling = sampling or Sampling()
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.cache_max_tokens = cache_max_tokens
        self.on_tokens: Any = None
        self.stop_ids = [tokenizer.eos_token_id]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._entries: list[_Entry] = []
        self._weights: Any = None
        # Counters of the reusing path: prompt tokens, those not prefilled (kept from an earlier call, or shared with
        # an earlier row of the batch), tokens prefilled (padding included), decode steps, and wall time of each phase.
        self.stats = dict.fromkeys(["prompt_tokens", "reused_tokens", "shared_tokens", "prefilled_tokens"], 0)
        self.stats.update(decode_steps=0, prefill_s=0.0, decode_s=0.0)

    @classmethod
    def from_pretrained(
        cls, name: str = "default", sampling: Sampling | None = None, **load: Any
    ) -> TransformersPolicy:
        from agentenv.models import load_model

        model, tokenizer = load_model(name, **load)
        policy = cls(model, tokenizer, sampling)
        policy.name = f"model:{name}"
        return policy

    def cache_info(self) -> dict[str, int]:
        """What the prefix cache holds: entries, their tokens, and the buffer slots they keep alive."""
        return {
            "entries": len(self._entries),
            "tokens": sum(len(e.ids) for e in self._entries),
            "slots": sum(e.slots for e in self._entries),
        }

    def clear_cache(self) -> None:
        """Drop every kept KV entry (call after updating the weights)."""
        self._entries = []
        self._weights = None

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        sampling = sampling or self.sampling
        out: list[Generation] = []
        if not (self.prefix_cache and self.reuse_supported()):
            for start in range(0, len(prompts), self.batch_size):
                out += self._generate_batch(prompts[start : start + self.batch_size], sampling)
            return out
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        weights = self._weights_fingerprint()
        if self._weights is None or not _same_weights(self._weights, weights):
            self._entries = []
        old, new, slots = self._entries, [], 0
        for start in range(0, len(prompts), self.batch_size):
            chunk = [list(p) for p in prompts[start : start + self.batch_size]]
            generations, entries = self._generate_reusing(chunk, sampling, old + new)
            out += generations
            if slots + sum(e.slots for e in entries) <= self.cache_max_tokens:  # a batch's entries share one buffer
                new += entries
                slots += sum(e.slots for e in entries)
        self._entries, self._weights = new, weights
        return out

    def reuse_supported(self) -> bool:
        """Whether this model can reuse KV prefixes: full attention everywhere, sdpa or eager attention."""
        config = self.model.config
        types = set(getattr(config, "layer_types", None) or ["full_attention"])
        sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
        attention = getattr(config, "_attn_implementation", "eager")
        return types == {"full_attention"} and not sliding and attention in ("sdpa", "eager")

    def _weights_fingerprint(self) -> tuple[Any, Any]:
        import torch

        params = list(self.model.parameters())
        versions = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        with torch.no_grad():
            samples = [p.detach().reshape(-1)[:: max(1, p.numel() // 16)].float() for p in params]
            return versions, torch.cat(samples)

    def _generate_batch(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        import torch

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        greedy = sampling.temperature == 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        if self.on_tokens is not None:
            kwargs["streamer"] = _TokenCounter(self.on_tokens, sampling.max_new_tokens)
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.random.fork_rng(devices=[], enabled=sampling.seed is not None):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.no_grad():
                result = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        new_tokens = result.sequences[:, width:]
        logits = torch.stack(result.logits, dim=1).float()  # (batch, new, vocab), before any warping
        logprobs = torch.log_softmax(logits / (sampling.temperature if not greedy else 1.0), dim=-1)
        chosen = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        return self._generations(new_tokens, chosen)

    def _generations(self, new_tokens: Any, chosen: Any) -> list[Generation]:
        generations = []
        for row in range(new_tokens.shape[0]):
            ids = new_tokens[row].tolist()
            end = next((i + 1 for i, t in enumerate(ids) if t in self.stop_ids), None)
            finish = "stop" if end is not None else "length"
            ids = ids[:end] if end is not None else ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            generations.append(Generation(ids, chosen[row, : len(ids)].tolist(), finish, text))
        return generations

    def _plan(self, prompts: list[list[int]], entries: list[_Entry]) -> list[tuple[_Entry | int | None, int]]:
        """Per prompt, where its first ``length`` KV states come from: a kept entry, an earlier row of this batch
        that prefills a longer shared prefix (e.g. one system prompt), or nowhere (``None``, 0)."""
        plan: list[tuple[_Entry | int | None, int]] = []
        for i, prompt in enumerate(prompts):
            best: tuple[_Entry | int | None, int] = (None, 0)
            for entry in entries:
                length = min(common_prefix(entry.ids, prompt), len(prompt) - 1)  # the last token gives the logits
                if length > best[1]:
                    best = (entry, length)
            for j in range(i):
                if not isinstance(plan[j][0], int):  # only rows that prefill themselves can lead
                    length = min(common_prefix(prompts[j], prompt), len(prompt) - 1)
                    if length >= best[1] + MIN_SHARED:
                        best = (j, length)
            plan.append(best)
        return plan

    def _generate_reusing(
        self, prompts: list[list[int]], sampling: Sampling, entries: list[_Entry]
    ) -> tuple[list[Generation], list[_Entry]]:
        """Generate for one batch, prefilling only what no entry or earlier row covers; also returns new entries."""
        import torch

        device = next(self.model.parameters()).device
        plan = self._plan(prompts, entries)
        self.stats["prompt_tokens"] += sum(len(p) for p in prompts)
        self.stats["reused_tokens"] += sum(n for source, n in plan if isinstance(source, _Entry))
        self.stats["shared_tokens"] += sum(n for source, n in plan if isinstance(source, int))
        # Buffer rows: rows that lead (or prefill alone) first, then rows that copy a leader's prefix; each phase
        # sorted by suffix length, longest first, so its prefill groups are contiguous rows.
        n = len(prompts)
        suffix = [len(p) - length for p, (_, length) in zip(prompts, plan, strict=True)]
        order = sorted(range(n), key=lambda i: (isinstance(plan[i][0], int), -suffix[i]))
        row_of = {i: row for row, i in enumerate(order)}
        leaders = sum(not isinstance(plan[i][0], int) for i in order)
        longest, max_new = max(len(p) for p in prompts), sampling.max_new_tokens
        offsets = torch.tensor([longest - len(prompts[i]) for i in order], device=device)  # rows end at `longest`
        fill = {row: (plan[i][0], plan[i][1], longest - len(prompts[i])) for row, i in enumerate(order)}
        cache = _SlotCache(n, longest + max_new - 1, {r: f for r, f in fill.items() if isinstance(f[0], _Entry)})
        slots = torch.arange(cache.width, device=device)
        valid = slots[None, :] >= offsets[:, None]  # (rows, slots): the slots holding each row's tokens
        run = self._forward_fn()
        suffixes = [suffix[i] for i in order]
        prompts_in_order = [prompts[i] for i in order]

        def prefill(first: int, last: int) -> list[Any]:
            logits = []
            for a, b in prefill_groups(suffixes[first:last]):
                a, b = a + first, b + first
                width = suffixes[a]
                ids = torch.full((b - a, width), self.pad_id, dtype=torch.long)
                for row in range(a, b):
                    ids[row - a, width - suffixes[row] :] = torch.tensor(prompts_in_order[row][-suffixes[row] :])
                query, keys = slots[longest - width : longest], slots[None, None, None, :longest]
                real = query[None, :] >= longest - torch.tensor(suffixes[a:b], device=device)[:, None]
                mask = valid[a:b, None, None, :longest] & (keys <= query[None, None, :, None])
                mask |= keys == query[None, None, :, None]  # a padding query attends to itself alone
                positions = (query[None, :] - offsets[a:b, None]).clamp(min=0)
                cache.rows, cache.start, cache.end = slice(a, b), longest - width, longest
                cache.write = None if bool(real.all()) else real[:, None, :, None]
                logits.append(run(ids.to(device), mask, positions, cache, 1))
                self.stats["prefilled_tokens"] += ids.numel()
            return logits

        with torch.random.fork_rng(devices=[], enabled=sampling.seed is not None):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.no_grad():
                start = time.perf_counter()
                logits = prefill(0, leaders)
                for row in range(leaders, n):  # copy each follower's shared prefix from its leader's row
                    leader, length, offset = fill[row]
                    source = row_of[leader]
                    at = int(offsets[source])
                    for buffer in cache.keys + cache.values:
                        buffer[row, :, offset : offset + length] = buffer[source, :, at : at + length]
                logits = torch.cat(logits + prefill(leaders, n))
                self.stats["prefill_s"] += time.perf_counter() - start
                start = time.perf_counter()
                tokens, chosen = self._decode(logits, sampling, order, cache, valid, offsets, longest, run)
                self.stats["decode_s"] += time.perf_counter() - start
        generations = self._generations(tokens, chosen)
        kept = []
        for row, (prompt, generation) in enumerate(zip(prompts_in_order, generations, strict=True)):
            ids = prompt + generation.token_ids[:-1]  # the last token was never fed
            start = int(offsets[row])
            keys = [k[row, :, start : start + len(ids)] for k in cache.keys]
            values = [v[row, :, start : start + len(ids)] for v in cache.values]
            kept.append(_Entry(ids, keys, values, cache.width))
        return [generations[row_of[i]] for i in range(n)], [kept[row_of[i]] for i in range(n)]

    def _decode(
        self, logits: Any, sampling: Sampling, order: list[int], cache: _SlotCache, valid: Any, offsets: Any,
        longest: int, run: Any,
    ) -> tuple[Any, Any]:  # fmt: skip
        """Sample up to ``max_new_tokens`` per row from the prefilled ``cache``: (tokens, logprobs), on the CPU."""
        import torch

        device = logits.device
        n = logits.shape[0]
        back = torch.tensor(sorted(range(n), key=order.__getitem__), device=device)
        forth = torch.tensor(order, device=device)
        stop = torch.tensor(self.stop_ids, device=device)
        unfinished = torch.ones(n, dtype=torch.bool, device=device)
        cache.rows, cache.write = slice(0, n), None
        tokens, chosen = [], []
        for step in range(sampling.max_new_tokens):
            token, logprob = _pick(logits[back], sampling)  # in the caller's row order, as model.generate samples
            token = torch.where(unfinished, token[forth], self.pad_id)
            tokens.append(token)
            chosen.append(logprob[forth])
            unfinished &= ~torch.isin(token, stop)
            if step == sampling.max_new_tokens - 1 or not bool(unfinished.any()):
                break
            if self.on_tokens is not None and (step + 1) % TOKEN_REPORT_EVERY == 0:
                self.on_tokens(step + 1, sampling.max_new_tokens)
            slot = longest + step
            self.stats["decode_steps"] += 1
            cache.start, cache.end = slot, slot + 1
            logits = run(token[:, None], valid[:, None, None, : slot + 1], (slot - offsets)[:, None], cache, 0)
        return torch.stack(tokens, 1).cpu(), torch.stack(chosen, 1).cpu()

    def _forward_fn(self) -> Any:
        """``run(ids, bool_mask, positions, cache, keep) -> float32 logits of each row's last position``."""
        import torch

        model = self.model
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        eager = getattr(model.config, "_attn_implementation", "eager") == "eager"
        dtype = next(model.parameters()).dtype

        def run(ids: Any, mask: Any, positions: Any, cache: _SlotCache, keep: int) -> Any:
            if eager:  # eager attention adds the mask to the scores
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(dtype).min
                )
            out = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=keep,
                **{name: cache},
            )  # fmt: skip
            return out.logits[:, -1].float()

        return run


class _TokenCounter:
    """A ``model.generate`` streamer that only counts: ``on_tokens(done, limit)`` every ``TOKEN_REPORT_EVERY``
    tokens (its first ``put`` is the prompt)."""

    def __init__(self, on_tokens: Any, limit: int):
        self.on_tokens, self.limit, self.done = on_tokens, limit, -1

    def put(self, value: Any) -> None:
        self.done += 1
        if self.done and self.done % TOKEN_REPORT_EVERY == 0 and self.done < self.limit:
            self.on_tokens(self.done, self.limit)

    def end(self) -> None:
        pass


def _same_weights(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    import torch

    return a[0] == b[0] and torch.equal(a[1], b[1])


def _pick(logits: Any, sampling: Sampling) -> tuple[Any, Any]:
    """The next token per row, as ``model.generate`` samples it, and its log-probability under logits / temperature."""
    import torch

    if sampling.temperature == 0:
        token = logits.argmax(-1)
        return token, torch.log_softmax(logits, -1).gather(-1, token[:, None])[:, 0]
    scores = logits / sampling.temperature
    logprobs = torch.log_softmax(scores, -1)
    if sampling.top_p < 1.0:  # transformers' TopPLogitsWarper
        ordered, indices = torch.sort(scores, descending=False)
        drop = ordered.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(1, indices, drop), -float("inf"))
    token = torch.multinomial(torch.softmax(scores, -1), num_samples=1)[:, 0]
    return token, logprobs.gather(-1, token[:, None])[:, 0]
