"""Episodes of an env played by a policy, as records that can be saved, summarised and trained on.

This module is the one place where turns become training data. Today it records text turns played by scripted
policies; model runners add token ids, loss masks and logprobs to the same records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from agentenv.core import TextEnv


@dataclass
class Turn:
    action: str
    observation: str
    reward: float
    invalid_action: bool
    reward_parts: dict[str, float] = field(default_factory=dict)


@dataclass
class Episode:
    env_id: str
    policy: str
    seed: int
    task_id: str
    instructions: str
    first_observation: str
    optimal_steps: int | None
    turns: list[Turn] = field(default_factory=list)
    success: bool = False
    terminated: bool = False
    truncated: bool = False

    @property
    def episode_return(self) -> float:
        return sum(t.reward for t in self.turns)

    def messages(self) -> list[dict[str, str]]:
        """The episode as a chat: system = instructions, user = env messages, assistant = agent turns."""
        chat = [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": self.first_observation},
        ]
        for turn in self.turns:
            chat.append({"role": "assistant", "content": turn.action})
            chat.append({"role": "user", "content": turn.observation})
        return chat[:-1] if self.turns else chat  # the last env message answers no agent turn to learn

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["return"] = self.episode_return
        record["messages"] = self.messages()
        return record


def play_episode(env: gym.Env, policy: Any, seed: int, env_id: str = "") -> Episode:
    """Play one episode of ``env`` from ``reset(seed=seed)`` with a scripted policy (see ``agentenv.policies``)."""
    observation, info = env.reset(seed=seed)
    base: TextEnv = env.unwrapped  # type: ignore[assignment]
    episode = Episode(
        env_id=env_id or (env.spec.id if env.spec else type(base).__name__),
        policy=getattr(policy, "name", type(policy).__name__),
        seed=seed,
        task_id=info.get("task_id", ""),
        instructions=info.get("instructions", base.instructions),
        first_observation=observation,
        optimal_steps=info.get("optimal_steps"),
    )
    policy.start(base, observation, info)
    while True:
        action = policy.act(observation, info)
        observation, reward, terminated, truncated, info = env.step(action)
        episode.turns.append(
            Turn(
                str(action),
                observation,
                float(reward),
                bool(info.get("invalid_action")),
                info.get("reward_parts", {}),
            )
        )
        if terminated or truncated:
            episode.success = bool(info.get("success"))
            episode.terminated, episode.truncated = bool(terminated), bool(truncated)
            return episode


def summarize(episodes: Iterable[Episode]) -> dict[str, float]:
    """Success rate, mean return and turns, invalid-turn rate, and turns over optimal (solved episodes only)."""
    episodes = list(episodes)
    if not episodes:
        return {"episodes": 0}
    turns = [len(e.turns) for e in episodes]
    invalid = sum(t.invalid_action for e in episodes for t in e.turns)
    solved = [len(e.turns) / e.optimal_steps for e in episodes if e.success and e.optimal_steps]
    return {
        "episodes": len(episodes),
        "success_rate": sum(e.success for e in episodes) / len(episodes),
        "mean_return": sum(e.episode_return for e in episodes) / len(episodes),
        "mean_turns": sum(turns) / len(episodes),
        "invalid_rate": invalid / max(1, sum(turns)),
        "turns_over_optimal": sum(solved) / len(solved) if solved else math.nan,
    }


def write_jsonl(episodes: Iterable[Episode], path: str | Path, *, sft: bool = False) -> int:
    """Write episodes to JSONL, one per line (full records, or SFT chats with ``sft=True``); returns how many.

    Writes a temporary file and renames it, so an interrupted run never leaves a truncated file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for episode in episodes:
            record = sft_record(episode) if sft else episode.to_json()
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def sft_record(episode: Episode) -> dict[str, Any]:
    """One SFT example: the chat (system, user, assistant, ...) plus where it came from."""
    return {
        "messages": episode.messages(),
        "env_id": episode.env_id,
        "task_id": episode.task_id,
        "policy": episode.policy,
        "success": episode.success,
        "return": episode.episode_return,
    }


def load_sft_dataset(path: str | Path) -> Any:
    """A ``datasets.Dataset`` of the SFT JSONL written by ``agentenv sft-data`` (needs the ``datasets`` package)."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError("load_sft_dataset needs the 'train' extra: pip install 'agentenv[train]'") from e
    return datasets.Dataset.from_json(str(path))


def read_jsonl(path: str | Path) -> Iterator[Episode]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            turns = [Turn(**t) for t in record.pop("turns")]
            for derived in ("return", "messages"):
                record.pop(derived, None)
            yield Episode(**record, turns=turns)
