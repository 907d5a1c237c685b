"""Turn-by-turn play for model runners: the ``start``/``act`` half of :class:`~agentenv.policy.TokenPolicy`.

:func:`agentenv.rollout.play_episode` plays any :class:`~agentenv.policy.EpisodePolicy` one turn at a time; a model
runner inherits :class:`TurnByTurn` to be one. The conversation is kept as :func:`agentenv.rollout.rollout` keeps
it — the agent's ids as generated, the env's messages as chat-template deltas — so a turn played here is the turn
the rollout engine would have generated for the same prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentenv.core import TextEnv
from agentenv.policies.tools import tool_chat_format
from agentenv.policy import Generation, Sampling
from agentenv.rollout import env_message


class TurnByTurn:
    """``start(env, observation, info)`` / ``act(observation, info) -> text`` on top of ``generate``.

    One episode at a time per runner (``start`` begins a new one). A generation that fails raises
    :class:`RuntimeError` with the runner's error: ``play_episode`` has no per-episode error record.
    """

    tokenizer: Any

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        raise NotImplementedError

    def start(self, env: TextEnv, observation: str, info: dict[str, Any]) -> None:
        self._chat_format = tool_chat_format(self.tokenizer, env.tools)
        instructions = info.get("instructions", env.instructions)
        opening = [{"role": "system", "content": instructions}, {"role": "user", "content": observation}]
        self._ids = self._chat_format.start(opening)
        self._last: Generation | None = None

    def act(self, observation: str, info: dict[str, Any]) -> str:
        assert hasattr(self, "_ids"), "call start() first"
        if self._last is not None:  # the env answered the last turn: append its message as a delta
            message = env_message(observation, self._last.text, info)
            self._ids += self._chat_format.delta(message, ended=self._chat_format.ended(self._last.token_ids))
        [generation] = self.generate([self._ids])
        if generation.finish_reason == "error":
            raise RuntimeError(f"generation failed: {generation.error}")
        self._ids += generation.token_ids
        self._last = generation
        return generation.text
