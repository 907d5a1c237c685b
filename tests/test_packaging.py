"""Packaging: the built wheel, a clean install of it, an editable install, and a scaffolded plugin.

Child virtual environments are made without pip and see the parent's site-packages through a ``.pth`` file,
so nothing is downloaded: the parent's pip installs into them with ``--no-deps --no-build-isolation``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MAPPED_FOLDERS = ("envs", "rewards", "policies", "recipes")
PARENT_PURELIB = sysconfig.get_paths()["purelib"]


def _run(args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _ok(args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = _run(args, cwd)
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _child_venv(path: Path, *, parent_editables: bool) -> Path:
    """A venv without pip that sees the parent's site-packages; returns its python.

    parent_editables=False adds the parent's site-packages as a plain path, so dependencies resolve but the
    parent's editable agentenv finder is not activated; True runs ``site.addsitedir`` on it, which processes
    the parent's .pth files and so makes the parent's editable agentenv importable.
    """
    _ok([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / "bin" / "python"
    purelib = Path(_ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    line = f"import site; site.addsitedir({PARENT_PURELIB!r})" if parent_editables else PARENT_PURELIB
    (purelib / "_agentenv_parent.pth").write_text(line + "\n", encoding="utf-8")
    return python


def _pip_install(python: Path, *args) -> None:
    _ok([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a clean copy: an in-tree build reuses build/lib, whose stale files could hide a subpackage
    # missing from the packages list, and would leave build/ in the checkout.
    source = tmp_path_factory.mktemp("source") / "agentenv"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"
    )
    shutil.copytree(REPO_ROOT, source, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    _ok([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source])
    (built,) = out.glob("agentenv-*.whl")
    return built


@pytest.mark.slow
def test_wheel_contains_subpackages_under_agentenv(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points_text = zf.read(entry_points).decode()
    expected = {
        "agentenv/core.py",
        "agentenv/envs/keydoor/env.py",
        "agentenv/envs/keydoor/world.py",
        "agentenv/envs/keydoor/README.md",
        "agentenv/rewards/shaping.py",
        "agentenv/policies/scripted.py",
        "agentenv/recipes/__init__.py",
        "agentenv/envs/textworld/README.md",
        "agentenv/envs/household/README.md",
        "agentenv/rewards/prompts/pointwise.yaml",
        "agentenv/rewards/data/master_keys.yaml",
        "agentenv/recipes/demo.yaml",
        "agentenv/recipes/findings.yaml",
        "agentenv/recipes/grids/algorithms-cpu.yaml",
    }
    assert expected <= names, sorted(expected - names)
    stray = [n for n in names if n.split("/")[0] in (*MAPPED_FOLDERS, "tests")]
    assert not stray, stray
    sources = {
        f"agentenv/{folder}/{py.relative_to(REPO_ROOT / folder).as_posix()}"
        for folder in MAPPED_FOLDERS
        for py in (REPO_ROOT / folder).rglob("*.py")
    }
    assert sources <= names, f"source modules missing from the wheel: {sorted(sources - names)}"
    group = entry_points_text.split("[agentenv.envs]\n", 1)[1].split("\n[", 1)[0].splitlines()
    for family in ("keydoor", "textworld", "household"):
        assert f"{family} = agentenv.envs.{family}:register_envs" in group
    commands = entry_points_text.split("[agentenv.cli]\n", 1)[1].split("\n[", 1)[0].splitlines()
    for layer_module in ("envs.search.cli", "envs.swe.cli", "envs.judge.cli", "policies.cli", "recipes.cli"):
        assert any(line.endswith(f"= agentenv.{layer_module}:register") for line in commands), layer_module
    assert "[console_scripts]\nagentenv = agentenv.cli:main" in entry_points_text


@pytest.mark.slow
def test_wheel_installs_and_registers_envs(wheel, tmp_path):
    python = _child_venv(tmp_path / "venv", parent_editables=False)
    _pip_install(python, wheel)
    snippet = (
        "import gymnasium as gym, agentenv\n"
        "e = gym.make('agentenv:AgentEnv/KeyDoor-s3k1d2-v0')\n"
        "print(agentenv.__file__)\n"
        "print(e.reset(seed=0)[0])\n"
    )
    out = _ok([python, "-c", snippet], cwd=tmp_path).stdout
    module_file, observation = out.split("\n", 1)
    assert Path(module_file).resolve().is_relative_to((tmp_path / "venv").resolve())
    assert not Path(module_file).resolve().is_relative_to(REPO_ROOT)
    assert "Goal:" in observation


@pytest.mark.slow
def test_scaffolded_plugin_installs_lists_checks_and_passes_its_own_tests(tmp_path):
    from agentenv.scaffold import scaffold

    plugin = scaffold("demo-env", tmp_path)
    python = _child_venv(tmp_path / "venv", parent_editables=True)
    _pip_install(python, "-e", plugin)

    listing = _ok([python, "-m", "agentenv.cli", "list"], cwd=tmp_path)
    assert "AgentEnv/DemoEnv-v0" in listing.stdout
    assert "failed to load" not in listing.stderr

    check = _ok([python, "-m", "agentenv.cli", "check", "AgentEnv/DemoEnv-v0"], cwd=tmp_path)
    assert "PASS" in check.stdout

    tests = _ok([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=plugin)
    assert "2 passed" in tests.stdout


def test_editable_install_maps_folders():
    import agentenv.envs.keydoor
    import agentenv.policies
    import agentenv.rewards

    for module, folder in (
        (agentenv.envs.keydoor, "envs"),
        (agentenv.rewards, "rewards"),
        (agentenv.policies, "policies"),
    ):
        assert Path(module.__file__).resolve().is_relative_to(REPO_ROOT / folder), module.__file__


@pytest.mark.slow
def test_gpu_and_train_extras_co_resolve(tmp_path):
    """vLLM pins torch and transformers exactly; the train extra must admit its pins (pip resolves from the index,
    reading package metadata only: nothing is installed)."""
    import json

    report = tmp_path / "report.json"
    result = _run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report",
                   report, f"{REPO_ROOT}[train,gpu]"])  # fmt: skip
    if result.returncode != 0 and ("Could not fetch" in result.stderr or "NewConnectionError" in result.stderr):
        pytest.skip(f"the package index is unreachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    versions = {
        i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    assert versions["vllm"].startswith("0.33.")
    assert versions["torch"] == "2.14.0"
    assert versions["transformers"].startswith("5.") and int(versions["transformers"].split(".")[1]) < 21


def test_vllm_runner_names_the_extra_when_vllm_is_missing():
    from agentenv.policies.vllm import VLLMPolicy

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"agentenv\[gpu\]"):
            VLLMPolicy("some/model")
    else:
        pytest.skip("vllm is installed here")
