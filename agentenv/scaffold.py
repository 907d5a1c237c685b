"""``agentenv new NAME``: a plugin package whose env registers through the ``agentenv.envs`` entry point.

The generated package is small but complete: a ``TextEnv`` with a walkthrough, its registration function, a
``pyproject.toml`` declaring the entry point, a README, and a test that runs :func:`agentenv.testing.check_env`.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from agentenv.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")

FILES: dict[str, str] = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=70"]
build-backend = "setuptools.build_meta"

[project]
name = "${dist}"
version = "0.1.0"
description = "An AgentEnv environment plugin"
requires-python = ">=3.10"
dependencies = ["agentenv"]

[project.optional-dependencies]
dev = ["pytest"]

# This is what makes `import agentenv` register the env: the group agentenv.envs, a callable that registers.
[project.entry-points."agentenv.envs"]
${module} = "${module}.registration:register_envs"

# A plugin can add `agentenv` commands too: the group agentenv.cli, a function register(app: typer.Typer) -> None
# that adds them (app.command()(my_command)); agentenv.terminal has the shared console and --kw option.
# [project.entry-points."agentenv.cli"]
# ${module} = "${module}.cli:register"

[tool.setuptools]
packages = ["${module}"]
""",
    "README.md": """\
# ${dist}

An [AgentEnv](https://pypi.org/project/agentenv/) environment plugin: `AgentEnv/${Class}-v0`.

```bash
pip install -e .
agentenv list              # the env appears, registered through the `agentenv.envs` entry point
agentenv play AgentEnv/${Class}-v0
agentenv check AgentEnv/${Class}-v0
pytest
```

Edit `${module}/env.py` (the game) and `${module}/registration.py` (ids, presets, descriptions).
""",
    "${module}/__init__.py": '''\
"""${dist}: an AgentEnv environment plugin."""
''',
    "${module}/registration.py": '''\
"""Called by AgentEnv through the `agentenv.envs` entry point (see pyproject.toml)."""


def register_envs() -> None:
    from agentenv import register  # imported here: this module is loaded while agentenv itself imports

    register(
        "${Class}-v0",
        "${module}.env:${Class}",
        family="${dist}",
        description="Guess the secret number; the env answers higher or lower",
    )
''',
    "${module}/env.py": '''\
"""The ${Class} environment: guess a secret number, the env answers "higher" or "lower"."""

from __future__ import annotations

from typing import Any

from agentenv import TextEnv
from agentenv.errors import check_range


class ${Class}(TextEnv):
    """Guess a whole number from 1 to ``high``. Sparse reward: 1 when guessed."""

    family = "${dist}"
    reward_modes = ("sparse",)

    def __init__(self, *, high: int = 100, **kwargs: Any):
        super().__init__(**kwargs)
        check_range("high", high, 2, 1_000_000, integer=True)
        self.high = high
        self.instructions = f"I am thinking of a whole number from 1 to {high}. Reply with one number per turn."
        self.secret, self.low, self.top = 0, 1, high

    @property
    def task_tag(self) -> str:
        return f"guess{self.high}"

    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.secret = 1 + task_seed % self.high
        self.low, self.top = 1, self.high
        return f"Guess my number (1 to {self.high}).", {"optimal_steps": len(self.walkthrough())}

    def _step(self, action: Any) -> tuple[str, float, bool, dict[str, Any]]:
        text = action.strip() if isinstance(action, str) else ""
        if not text.isdigit():
            return "Please reply with one whole number.", 0.0, False, {"invalid_action": True}
        guess = int(text)
        if guess == self.secret:
            return "Correct!", 1.0, True, {"success": True}
        if guess < self.secret:
            self.low = max(self.low, guess + 1)
            return "Higher.", 0.0, False, {}
        self.top = min(self.top, guess - 1)
        return "Lower.", 0.0, False, {}

    def walkthrough(self) -> list[str]:
        """Binary search over what is still possible."""
        low, top, guesses = self.low, self.top, []
        while True:
            mid = (low + top) // 2
            guesses.append(str(mid))
            if mid == self.secret:
                return guesses
            low, top = (mid + 1, top) if mid < self.secret else (low, mid - 1)
''',
    "tests/test_${module}.py": """\
import gymnasium as gym

from agentenv.testing import check_env


def test_env_meets_the_agentenv_contract():
    report = check_env("AgentEnv/${Class}-v0")
    assert report.ok


def test_lower_guess_gets_higher():
    env = gym.make("agentenv:AgentEnv/${Class}-v0", high=10)
    env.reset(options={"task_id": "guess10-6"})  # task seed 6: the secret is 7
    observation, reward, terminated, truncated, info = env.step("3")
    assert observation == "Higher." and reward == 0.0 and not terminated
    observation, reward, terminated, truncated, info = env.step("7")
    assert terminated and info["success"] and reward == 1.0
""",
}


def scaffold(name: str, directory: Path = Path(".")) -> Path:
    """Create the plugin package ``directory/name``; never overwrites an existing folder."""
    if not _NAME.match(name):
        raise ConfigError(f"plugin name {name!r} must be lowercase letters/digits joined by '-' or '_' (e.g. demo-env)")
    root = Path(directory) / name
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or --dir (nothing was overwritten)")
    words = re.split(r"[-_]", name)
    values = {"dist": name, "module": "_".join(words), "Class": "".join(w.capitalize() for w in words)}
    for relative, text in FILES.items():
        path = root / Template(relative).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    return root
