"""Token-exact conversations: the opening prompt, then chat-template *deltas* after each agent turn.

Re-rendering a whole conversation through the chat template at every turn re-encodes the agent's own tokens
(which may not be the canonical encoding of their text) and lets templates rewrite history (reasoning models drop
past ``<think>`` blocks). Both make the ids a trainer sees differ from the ids the model generated. Here the agent's
tokens are kept as generated; only the environment's messages are rendered, as the difference between the template
applied to a fixed dummy conversation with and without the new message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentenv.errors import ConfigError

_DUMMY = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U"},
    {"role": "assistant", "content": "A"},
]


class ChatFormat:
    """Encodes a conversation incrementally with a tokenizer's chat template (or ``chat_template``).

    ``start(messages)`` gives the ids of the opening prompt, ending with the generation prompt.
    ``delta(message, ended=...)`` gives the ids to append after the agent's generated tokens: the template's
    text between the end-of-turn token and the next generation prompt (with the end-of-turn token itself first
    when the agent's turn was cut off before it).
    """

    def __init__(self, tokenizer: Any, *, chat_template: str | None = None, tools: Sequence[dict] | None = None):
        self.tokenizer = tokenizer
        self.template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.template:
            raise ConfigError("the tokenizer has no chat template; pass chat_template=")
        self.tools = list(tools) if tools else None
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no eos token; ChatFormat needs the end-of-turn token")
        self.end_of_turn_ids = [tokenizer.eos_token_id]
        self.end_of_turn = tokenizer.eos_token
        base = self.render(_DUMMY, add_generation_prompt=False)
        end = base.rfind(self.end_of_turn)
        if end < 0 or base.rfind("A", 0, end) < 0:
            raise ConfigError(
                f"the chat template does not end an assistant turn with the eos token {self.end_of_turn!r}; "
                "pass a tokenizer whose eos token is the template's end-of-turn marker"
            )
        self._base = base
        self._after_end = base[end + len(self.end_of_turn) :]  # e.g. "\n" after "<|im_end|>" in ChatML

    def render(self, messages: Sequence[dict], *, add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tools=self.tools, chat_template=self.template, tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )  # fmt: skip

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def start(self, messages: Sequence[dict]) -> list[int]:
        """Ids of the opening prompt (system, first env message), ending with the generation prompt."""
        return self.encode(self.render(messages, add_generation_prompt=True))

    def delta_text(self, message: dict, *, ended: bool) -> str:
        full = self.render([*_DUMMY, message], add_generation_prompt=True)
        if not full.startswith(self._base):
            raise ConfigError("the chat template re-renders earlier turns when a message is added; it cannot be used")
        return ("" if ended else self.end_of_turn) + self._after_end + full[len(self._base) :]

    def delta(self, message: dict, *, ended: bool = True) -> list[int]:
        """Ids to append after the agent's tokens for the next env ``message`` (role ``user`` or ``tool``)."""
        return self.encode(self.delta_text(message, ended=ended))

    def encode_chat(self, messages: Sequence[dict]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        """A whole conversation as the rollout engine would have built it: ``(ids, loss_mask, turn_spans)``.

        Each assistant message is its text's ids plus the end-of-turn token (mask 1); everything else is the opening
        prompt or a chat-template delta (mask 0). This is how demonstrations (SFT data) become training rows with
        the same layout as the model's own trajectories.
        """
        first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        if first is None or first == 0:
            raise ConfigError("a conversation to train on needs at least one assistant message after the prompt")
        ids = self.start(messages[:first])
        mask, spans = [0] * len(ids), []
        previous = "assistant"
        for message in messages[first:]:
            if message.get("role") == "assistant":
                if previous == "assistant" and spans:
                    raise ConfigError("two assistant messages in a row: an env message must separate agent turns")
                turn = self.encode(str(message.get("content") or "")) + self.end_of_turn_ids
                spans.append((len(ids), len(ids) + len(turn)))
                ids, mask = ids + turn, mask + [1] * len(turn)
            else:
                if previous != "assistant":
                    raise ConfigError("two env messages in a row after the prompt: merge them into one message")
                delta = self.delta(message)
                ids, mask = ids + delta, mask + [0] * len(delta)
            previous = message.get("role")
        return ids, mask, spans

    def ended(self, token_ids: Sequence[int]) -> bool:
        """Whether generated ids end the agent's turn with the end-of-turn token."""
        return bool(token_ids) and token_ids[-1] in self.end_of_turn_ids
