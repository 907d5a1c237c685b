"""The layers' import rules and the length limit on functions, read from the source with ``ast``.

Layers are the folders pyproject.toml maps to packages: the core (``agentenv/``: ``agentenv.*``), ``envs/``
(``agentenv.envs.*``), ``rewards/``, ``policies/`` and ``recipes/``. ``agentenv/integrations/`` (adapters to other
libraries, e.g. TRL) is a layer of its own on top: it may import any layer, and none imports it.

An import is any ``import``/``from ... import`` statement wherever it is (module level, inside a function, under
``TYPE_CHECKING``), an ``importlib.import_module``/``__import__`` call with a literal name, and a literal entry point
``"agentenv.pkg.module:attr"`` (which the code hands to an importer).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Folder -> the package it installs as (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "agentenv": "agentenv",
    "envs": "agentenv.envs",
    "rewards": "agentenv.rewards",
    "policies": "agentenv.policies",
    "recipes": "agentenv.recipes",
}
LAYERS = ("integrations", "envs", "rewards", "policies", "recipes")
#: Layer -> the layers it must not import.
FORBIDDEN = {
    "core": {"envs", "rewards", "policies", "recipes", "integrations"},
    "rewards": {"envs", "policies", "recipes", "integrations"},
    "envs": {"policies", "recipes", "integrations"},
    "policies": {"integrations"},
    "recipes": {"integrations"},
}
ENTRY_POINT = re.compile(r"^agentenv(\.\w+)*:[A-Za-z_][\w.]*$")
IMPORTERS = {"import_module", "__import__"}

MAX_FUNCTION_LINES = 80
#: Functions allowed over the limit, as "path::name", each with the reason it still is.
KNOWN_LONG_FUNCTIONS: set[str] = set()
#: Folders whose functions the limit does not cover.
UNLIMITED_FOLDERS = {"benchmarks", "tests"}


def module_name(path: Path) -> str:
    """The dotted name ``path`` (relative to the repository root) installs as."""
    folder, *rest = path.with_suffix("").parts
    if rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([PACKAGE_DIRS[folder], *rest])


def layer(module: str) -> str | None:
    """The layer a dotted module name belongs to; None outside agentenv."""
    parts = module.split(".")
    if parts[0] != "agentenv":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything ``source`` (the module ``module``) imports, wherever in the file."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from agentenv import envs` imports a subpackage
                yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and _literal(node.args[0]) is not None:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in IMPORTERS:
                yield node.lineno, _literal(node.args[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ENTRY_POINT.match(node.value):
            yield node.lineno, node.value.partition(":")[0]


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def package_files() -> list[Path]:
    return sorted(p.relative_to(REPO_ROOT) for folder in PACKAGE_DIRS for p in (REPO_ROOT / folder).rglob("*.py"))


def violations(importer: str) -> list[str]:
    found = []
    for path in package_files():
        module = module_name(path)
        if layer(module) != importer:
            continue
        source = (REPO_ROOT / path).read_text(encoding="utf-8")
        for line, target in imported_modules(source, module, path.name == "__init__.py"):
            if layer(target) in FORBIDDEN[importer]:
                found.append(f"{path}:{line} ({importer}) imports {target} ({layer(target)})")
    return sorted(set(found))


def test_every_package_file_is_walked():
    names = {module_name(p) for p in package_files()}
    assert {"agentenv.cli", "agentenv.envs.search.cli", "agentenv.policies.cli", "agentenv.recipes.cli"} <= names
    assert {layer(n) for n in names} == {"core", *LAYERS}


def test_the_walker_sees_imports_in_functions_import_module_calls_and_entry_points():
    source = textwrap.dedent(
        """
        import importlib
        from . import sibling
        from ..rewards import judges

        def late():
            from agentenv.policies import build_policy
            importlib.import_module("agentenv.recipes.config")
            return "agentenv.rewards.judges:PairwiseJudge", "agentenv:AgentEnv/KeyDoor-v0", "agentenv.envs"
        """
    )
    found = {name for _, name in imported_modules(source, "agentenv.envs.search.cli")}
    assert {"agentenv.envs.search.sibling", "agentenv.envs.rewards.judges", "agentenv.policies.build_policy"} <= found
    assert {"agentenv.recipes.config", "agentenv.rewards.judges"} <= found
    assert "agentenv" not in found and "agentenv.envs" not in found  # a gym id and a group name are no imports


@pytest.mark.parametrize("importer", sorted(FORBIDDEN))
def test_layer_imports_no_forbidden_layer(importer):
    """The core imports no env, reward, policy, recipe or integration; rewards no env, policy or recipe; envs no
    policy or recipe; only integrations import integrations."""
    found = violations(importer)
    assert not found, f"{importer} must not import {sorted(FORBIDDEN[importer])}:\n" + "\n".join(found)


def _checked_files() -> Iterator[Path]:
    for top in sorted(REPO_ROOT.iterdir()):
        if top.name in UNLIMITED_FOLDERS or top.name.startswith(".") or top.name.endswith(".egg-info"):
            continue
        if top.is_file() and top.suffix == ".py":
            yield top
        elif top.is_dir() and top.name not in {"build", "dist", "runs"}:
            yield from sorted(top.rglob("*.py"))


def test_no_function_is_over_80_lines_outside_benchmarks_and_tests():
    long = {}
    for path in _checked_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO_ROOT)}::{node.name}"] = lines
    unexpected = {name: n for name, n in long.items() if name not in KNOWN_LONG_FUNCTIONS}
    assert not unexpected, f"functions over {MAX_FUNCTION_LINES} lines (split them): {unexpected}"
