"""A policy that runs a causal LM in-process with transformers (CPU or GPU): token ids in, token ids out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentenv.errors import check_range


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


class TransformersPolicy:
    """Batched generation with left padding; stops each row at the end-of-turn token.

    ``generate(prompts)`` takes token-id prompts (the rollout engine keeps conversations as ids) and returns one
    :class:`Generation` per prompt, with the log-probabilities of the sampled tokens under the sampling
    distribution (logits / temperature; greedy counts as temperature 1) — what PPO-style ratios need.
    """

    def __init__(self, model: Any, tokenizer: Any, sampling: Sampling | None = None, *, batch_size: int = 8):
        check_range("batch_size", batch_size, 1, integer=True)
        self.model, self.tokenizer = model, tokenizer
        self.sampling = sampling or Sampling()
        self.batch_size = batch_size
        self.stop_ids = [tokenizer.eos_token_id]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @classmethod
    def from_pretrained(
        cls, name: str = "default", sampling: Sampling | None = None, **load: Any
    ) -> TransformersPolicy:
        from agentenv.models import load_model

        model, tokenizer = load_model(name, **load)
        return cls(model, tokenizer, sampling)

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        sampling = sampling or self.sampling
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            out += self._generate_batch(prompts[start : start + self.batch_size], sampling)
        return out

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
        generations = []
        for row in range(len(prompts)):
            ids = new_tokens[row].tolist()
            end = next((i + 1 for i, t in enumerate(ids) if t in self.stop_ids), None)
            finish = "stop" if end is not None else "length"
            ids = ids[:end] if end is not None else ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            generations.append(Generation(ids, chosen[row, : len(ids)].tolist(), finish, text))
        return generations
