"""The pinned libraries that SWE tasks are built from, and their pristine source trees in the local cache.

Each library is one sdist from PyPI, pinned by version and sha256: the sdist carries the test suite, which
passes offline in seconds. :func:`fetch_source` downloads it once with pip (``<cache>/swe/sdists/``), checks the
hash and extracts it once (``<cache>/swe/src/<name>-<version>/``, atomically). :func:`prepare_task_tree` copies
that pristine tree and applies a task's ``bug_patch``: what the agent starts from.

Left out: inflect 7.6.0, whose tests import ``jaraco.*`` and ``typeguard`` (not dependencies of this project),
and humanize's ``test_time.py`` / ``test_i18n.py``, which need ``freezegun``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentenv.cache import build_once, cache_root
from agentenv.envs.swe.tasks import SWETask, apply_patch
from agentenv.errors import ConfigError, check_choice

#: Written into each extracted tree (and never copied into a task tree): which sdist it came from.
SOURCE_MARKER = ".agentenv-source.json"
#: Environment of every test run. Bytecode writing is off because a mutant of the same size written in the same
#: second as the original would otherwise be shadowed by a stale ``.pyc`` (pyc validation uses mtime and size);
#: a fixed hash seed makes set and dict orders in failure messages (and so the issue texts) reproducible.
TEST_ENV = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0"
#: pytest options of every test run: no cache folder in the tree, and no ``addopts`` from the sdist's config
#: (parse's asks for pytest-cov, which this project does not install).
PYTEST_OPTIONS = "-p no:cacheprovider -o addopts="


class SourceError(RuntimeError):
    """A pinned source that cannot be fetched or does not match its pin (download failure, wrong sha256)."""


@dataclass(frozen=True)
class Library:
    """A pinned sdist and how to test it. Paths are relative to the tree root (the sdist's top folder)."""

    name: str
    version: str
    sdist: str
    sha256: str
    #: Folders or files given to pytest: the suite that grades the tasks.
    test_paths: tuple[str, ...]
    #: Folders or files whose modules may be mutated.
    package_paths: tuple[str, ...]
    #: Glob patterns (relative paths) of modules never mutated: tests, vendored or generated code.
    exclude: tuple[str, ...] = ("*/tests/*", "*/_version.py")
    #: ``PYTHONPATH`` of the test runs, relative to the tree root, so the tree's copy shadows any installed one.
    pythonpath: str = "."
    #: The import name checked to resolve inside the tree.
    module: str = ""

    @property
    def base_commit(self) -> str:
        return f"sdist:{self.sha256}"

    @property
    def test_command(self) -> str:
        """The shell command (node ids or paths appended) that runs this library's tests from the tree root."""
        return f"PYTHONPATH={self.pythonpath} {TEST_ENV} python -m pytest {PYTEST_OPTIONS}"


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library(
            "toolz",
            "1.2.0",
            "toolz-1.2.0.tar.gz",
            "9667a038e9d6ecba37995e26cb2f59ec6420b6ad8dd9677de59db9b956b08490",
            test_paths=("toolz/tests", "toolz/sandbox/tests"),
            package_paths=("toolz",),
            module="toolz",
        ),
        Library(
            "boltons",
            "26.2.0",
            "boltons-26.2.0.tar.gz",
            "d39cfd15c1a1c3bd4d705c82252fa9edb8e4f5e8cc039f8e39afac7b1b47e92c",
            test_paths=("tests",),
            package_paths=("boltons",),
            module="boltons",
        ),
        Library(
            "parse",
            "1.22.4",
            "parse-1.22.4.tar.gz",
            "706d458feed5a81b02768d3156e8070baf6cee7d150a3a3c0cd43101a875c3b5",
            test_paths=("tests",),
            package_paths=("parse",),
            module="parse",
        ),
        Library(
            "tabulate",
            "0.10.0",
            "tabulate-0.10.0.tar.gz",
            "e2cfde8f79420f6deeffdeda9aaec3b6bc5abce947655d17ac662b126e48a60d",
            test_paths=("test",),
            package_paths=("tabulate",),
            module="tabulate",
        ),
        Library(
            "humanize",
            "4.17.0",
            "humanize-4.17.0.tar.gz",
            "1d6a36c453dbfbb3f0b34601d2e0b4ce5d48d780305cd45714843f0068fde6ac",
            test_paths=("tests/test_filesize.py", "tests/test_lists.py", "tests/test_number.py"),
            package_paths=("src/humanize",),
            pythonpath="src",
            module="humanize",
        ),
    )
}


def get_library(name: str) -> Library:
    """The pinned library ``name``; a :class:`ConfigError` lists the known ones."""
    check_choice("library", name, LIBRARIES)
    return LIBRARIES[name]


def library_for(task: SWETask) -> Library:
    """The pinned library a task was built from (by ``repo``), checked against its ``version`` and base."""
    if task.repo not in LIBRARIES:
        raise ConfigError(
            f"task {task.instance_id}: field 'repo'={task.repo!r} is not a pinned library; "
            f"known: {sorted(LIBRARIES)} (SWE-bench tasks need their own repository checkout)"
        )
    lib = LIBRARIES[task.repo]
    if task.version and task.version != lib.version:
        raise ConfigError(f"task {task.instance_id}: field 'version'={task.version!r}; pinned {lib.version!r}")
    if task.base_commit and task.base_commit != lib.base_commit:
        raise ConfigError(
            f"task {task.instance_id}: field 'base_commit'={task.base_commit!r} is not the pinned sdist "
            f"{lib.base_commit!r}"
        )
    return lib


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _swe_cache(cache_dir: str | os.PathLike | None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / "swe"


def source_ready(library: str | Library, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether :func:`fetch_source` has the library's tree at hand (extracted in the cache): no download, no
    extraction."""
    lib = library if isinstance(library, Library) else get_library(library)
    return (_swe_cache(cache_dir) / "src" / f"{lib.name}-{lib.version}" / SOURCE_MARKER).is_file()


def download_sdist(library: str | Library, cache_dir: str | os.PathLike | None = None) -> Path:
    """The library's sdist in ``<cache>/swe/sdists/``, downloaded by pip when absent; its sha256 is checked."""
    lib = library if isinstance(library, Library) else get_library(library)
    folder = _swe_cache(cache_dir) / "sdists"
    path = folder / lib.sdist
    if path.is_file():
        _check_hash(lib, path, f"the cached {path} (remove it to download it again)")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{lib.name}-", dir=folder) as staging:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += ["--disable-pip-version-check", "-q", "-d", staging, f"{lib.name}=={lib.version}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise SourceError(f"pip download {lib.name}=={lib.version} took over 600 s") from None
        files = sorted(Path(staging).iterdir())
        if done.returncode != 0 or not files:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise SourceError(
                f"pip could not download the sdist {lib.name}=={lib.version} (exit {done.returncode}):\n{tail}\n"
                f"Offline, put {lib.sdist} (sha256 {lib.sha256}) in {folder} by hand."
            )
        downloaded = next((f for f in files if f.name == lib.sdist), files[0])
        _check_hash(lib, downloaded, f"{lib.sdist} as downloaded by pip")
        os.replace(downloaded, path)
    return path


def _check_hash(lib: Library, path: Path, what: str) -> None:
    actual = sha256_file(path)
    if actual != lib.sha256:
        raise SourceError(
            f"sha256 mismatch for {what}: got {actual}, expected {lib.sha256} (the pin of {lib.name} "
            f"{lib.version} in agentenv.envs.swe.sources.LIBRARIES); the file was not used"
        )


def fetch_source(library: str | Library, cache_dir: str | os.PathLike | None = None) -> Path:
    """The pristine source tree of a pinned library: downloaded, hash-checked and extracted once.

    ``library`` is a name from :data:`LIBRARIES` or a :class:`Library` (a pin of your own). ``cache_dir`` is the
    AgentEnv cache root (default :func:`agentenv.cache.cache_root`). Treat the tree as read-only: copy it
    (:func:`prepare_task_tree`) before changing anything.
    """
    lib = library if isinstance(library, Library) else get_library(library)
    folder = _swe_cache(cache_dir) / "src" / f"{lib.name}-{lib.version}"
    marker = folder / SOURCE_MARKER
    if marker.is_file():
        built_from = json.loads(marker.read_text()).get("sha256")
        if built_from != lib.sha256:
            raise SourceError(
                f"{folder} was extracted from an sdist with sha256 {built_from}, not the pinned {lib.sha256}; "
                "remove the folder to extract the pinned one"
            )
        return folder
    sdist = download_sdist(lib, cache_dir)

    def extract(staging: Path) -> None:
        with tarfile.open(sdist) as archive:
            _safe_extract(archive, staging / ".sdist")
        tops = list((staging / ".sdist").iterdir())
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() else staging / ".sdist"
        for entry in top.iterdir():
            entry.rename(staging / entry.name)
        shutil.rmtree(staging / ".sdist")
        record = dataclasses.asdict(lib)
        (staging / SOURCE_MARKER).write_text(json.dumps(record, indent=1) + "\n")

    return build_once(folder, extract, marker=SOURCE_MARKER)


def _safe_extract(archive: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+: refuses absolute paths, links out, devices
        archive.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise SourceError(f"sdist member {member.name!r} is not a plain file inside the archive's folder")
    archive.extractall(dest)


def prepare_task_tree(
    task: SWETask, dest: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *, buggy: bool = True
) -> Path:
    """Copy the task's pristine tree to ``dest`` (absent or empty) and apply its ``bug_patch`` (pure Python).

    With ``buggy=False`` the copy stays pristine. Returns ``dest``.
    """
    pristine = fetch_source(library_for(task), cache_dir)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"dest={str(dest)!r} is not empty; a task tree is prepared into an empty folder")
    shutil.copytree(pristine, dest, ignore=shutil.ignore_patterns(SOURCE_MARKER), dirs_exist_ok=True)
    if buggy and task.bug_patch:
        apply_patch(dest, task.bug_patch)
    return dest


# ---- the env's test runs: a command and its stdout report ---------------------------------------------------

#: pytest's short-summary words (``-rA``) → the statuses :class:`agentenv.rewards.TestPassRatio` reads.
_SUMMARY_STATUS = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "XFAIL": "xfail", "XPASS": "xpass"}
_SUMMARY_LINE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S.*)$")


def test_invocation(task: SWETask, tests: Sequence[str] = ()) -> str:
    """The shell command that runs ``tests`` (node ids or paths; the task's ``test_paths`` when empty) from the
    tree root and prints pytest's ``-rA`` summary, one line per test, for :func:`parse_test_report`."""
    return dataclasses.replace(task, test_command=f"{task.test_command} -rA").command(tests)


test_invocation.__test__ = False  # not a pytest test, whatever imports it


def parse_test_report(stdout: str) -> dict[str, str]:
    """Node id → status (``passed``, ``failed``, ``error``, ``xfail``, ``xpass``) from pytest's ``-rA`` summary.

    Skipped tests carry no node id there and are left out (a grader counts a missing test as not passed). A
    parametrised id may contain `` - `` (the summary's separator before the message): its end is the ``]``
    that balances the brackets.
    """
    statuses: dict[str, str] = {}
    for line in stdout.splitlines():
        match = _SUMMARY_LINE.match(line.rstrip())
        if match:
            statuses[_summary_node_id(match.group(2))] = _SUMMARY_STATUS[match.group(1)]
    return statuses


def _summary_node_id(rest: str) -> str:
    last = rest.rfind("::")
    bracket = rest.find("[", last if last >= 0 else 0)
    if bracket >= 0 and (rest.find(" - ") < 0 or bracket < rest.find(" - ")):
        depth = 0
        for at in range(bracket, len(rest)):
            depth += {"[": 1, "]": -1}.get(rest[at], 0)
            if depth == 0 and (at + 1 == len(rest) or rest.startswith(" - ", at + 1)):
                return rest[: at + 1]
    return rest.split(" - ", 1)[0]
