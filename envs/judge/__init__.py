"""Judges you can train: verification data built offline (:mod:`.data`), the ``AgentEnv/Judge-*`` envs where a
judge is one more agent that learns (:mod:`.env`), and its red-team hacks (:mod:`.hacks`)."""

from __future__ import annotations

#: Registered presets: id suffix -> (kwargs, description).
PRESETS: dict[str, tuple[dict, str]] = {
    "Judge-Pointwise-v0": ({"mode": "pointwise"}, "is this response correct? Yes/No against the reference"),
    "Judge-Pointwise-Think-v0": (
        {"mode": "pointwise", "reasoning": True},
        "reason in <think>...</think>, then Yes/No (RM-R1 style)",
    ),
    "Judge-Pairwise-v0": ({"mode": "pairwise"}, "which of two responses is correct? A/B, both orders"),
    "Judge-Pairwise-Think-v0": (
        {"mode": "pairwise", "reasoning": True},
        "reason in <think>...</think>, then A/B",
    ),
}


def register_envs() -> None:
    from agentenv.registry import register

    for name, (kwargs, description) in PRESETS.items():
        register(name, "agentenv.envs.judge.env:JudgeEnv", kwargs=kwargs, family="judge", description=description)
