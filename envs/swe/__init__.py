"""SWE: repository tasks built offline by bug injection, sandboxed tools, test-based rewards (see README.md)."""

from __future__ import annotations

#: Registered presets: id suffix -> (kwargs, description).
PRESETS: dict[str, tuple[dict, str]] = {
    "SWE-Mutants-v0": ({}, "bugs injected into real libraries (toolz, boltons, parse, ...); bubblewrap sandbox"),
    "SWE-Mutants-easy-v0": ({"difficulty": "easy"}, "easy tier: one-line fixes, many failing tests"),
    "SWE-Mutants-medium-v0": ({"difficulty": "medium"}, "medium tier"),
    "SWE-Mutants-hard-v0": ({"difficulty": "hard"}, "hard tier: larger fixes, few failing tests"),
}


def register_envs() -> None:
    from agentenv.registry import register

    for name, (kwargs, description) in PRESETS.items():
        register(name, "agentenv.envs.swe.env:SWEEnv", kwargs=kwargs, family="swe", description=description)
