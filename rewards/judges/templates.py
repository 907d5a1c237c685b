"""Judge prompts as data: YAML templates in ``rewards/prompts/`` with ``{field}`` slots and optional blocks."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from agentenv.errors import ConfigError, closest

Chat = list[dict[str, str]]

TEMPLATE_KEYS = {"name", "description", "system", "user", "blocks", "item", "verdict"}


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
