"""The sandbox against a real bubblewrap: each escape attempt fails and the sandbox keeps working afterwards."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

from agentenv.cache import cache_root
from agentenv.errors import ConfigError
from agentenv.sandbox import (
    CGROUPS_SWITCH,
    DISK_QUOTA_SWITCH,
    ExecResult,
    Limits,
    SandboxError,
    WorkdirPool,
    available_backends,
    open_sandbox,
)

BACKENDS = available_backends()
needs_bwrap = pytest.mark.skipif(
    BACKENDS["bubblewrap"] is not None, reason=f"bubblewrap backend unavailable: {BACKENDS['bubblewrap']}"
)
needs_docker = pytest.mark.skipif(
    BACKENDS["docker"] is not None, reason=f"docker backend unavailable: {BACKENDS['docker']}"
)
PROJECT_DIR = Path(__file__).resolve().parent.parent
FAST = Limits(wall_seconds=10, memory_mb=1024, processes=64, output_bytes=20_000)
MB = 2**20


def cgroups_writable() -> bool:
    """Root with a writable cgroup file system: there the per-sandbox limits must hold, so their tests never skip."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, tail = line.partition(" - ")
            if tail.split()[:1] in (["cgroup"], ["cgroup2"]) and "rw" in fields.split()[5].split(","):
                return True
    return False


needs_cgroups = pytest.mark.skipif(
    not cgroups_writable(), reason="per-sandbox limits need root and a writable cgroup file system"
)


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny Python project with one passing and one failing test file."""
    root = tmp_path_factory.mktemp("project")
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_ok.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 2) == 4\n")
    (root / "tests" / "test_bad.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 2) == 5\n")
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return root


@pytest.fixture
def box(project):
    sandbox = open_sandbox(project, limits=FAST)
    yield sandbox
    sandbox.close()


def processes_matching(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def sleeping(marker: str) -> list[int]:
    """Host pids of ``sleep <marker>`` itself (not of the shells and bwrap that started it)."""
    found = []
    for pid in processes_matching(marker):
        with contextlib.suppress(OSError):
            found += [pid] if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0") else []
    return found


def processes_of_uid(uid: int) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            count += os.stat(f"/proc/{pid}").st_uid == uid
        except OSError:
            continue
    return count


def still_works(sandbox) -> None:
    result = sandbox.run("echo alive")
    assert result.ok and result.stdout == "alive\n", result


# ---- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("wall_seconds", 0), ("memory_mb", 0), ("processes", 1.5), ("disk_mb", 0), ("output_bytes", -1)],
)
def test_limits_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        Limits(**{field: value})


def test_bad_options_fail_fast_naming_what_is_allowed(project):
    with pytest.raises(ConfigError, match="backend"):
        open_sandbox(project, backend="bwrap")
    with pytest.raises(ConfigError, match="unknown options"):
        open_sandbox(project, backend="local", cpus=2)
    with pytest.raises(ConfigError, match="source"):
        open_sandbox(project / "calc.py", backend="local")
    with pytest.raises(ConfigError, match="image"):
        open_sandbox(project, backend="local", image="python:3.11")


@needs_bwrap
def test_root_that_cannot_be_mounted_is_a_config_error(project):
    with pytest.raises(ConfigError, match="root"):
        open_sandbox(project, root="/usr/new-folder")
    with pytest.raises(ConfigError, match="root"):
        open_sandbox(project, root="workspace")
    with pytest.raises(ConfigError, match="hide this Python"):
        open_sandbox(project, root=str(Path(sys.prefix).resolve().parent))


# ---- running commands ---------------------------------------------------------------------------------------


@needs_bwrap
def test_command_runs_in_the_copy_with_exit_code_and_streams(box, project):
    result = box.run("pwd; cat calc.py; echo oops >&2; exit 3")
    assert isinstance(result, ExecResult)
    assert result.exit_code == 3 and not result.ok and not result.timed_out
    assert result.stdout.startswith("/workspace\ndef add")
    assert result.stderr == "oops\n"
    assert "oops" in result.output and "def add" in result.output
    assert box.run(["python", "-c", "print(6 * 7)"]).stdout == "42\n"


@needs_bwrap
def test_environment_is_clean_and_python_is_the_projects(box, monkeypatch):
    monkeypatch.setenv("AGENTENV_HOST_SECRET", "hunter2")
    result = box.run("env; python -c 'import sys; print(sys.prefix)'", env={"EXTRA": "1"})
    assert "hunter2" not in result.stdout
    assert "EXTRA=1" in result.stdout and "HOME=/tmp" in result.stdout and "LANG=C.UTF-8" in result.stdout
    assert result.stdout.splitlines()[-1] == sys.prefix


@needs_bwrap
def test_stdin_cwd_and_tmp_that_persists(box):
    assert box.run("cat", stdin="from stdin").stdout == "from stdin"
    assert box.run("pwd", cwd="tests").stdout == "/workspace/tests\n"
    assert box.run("echo kept > /tmp/note").ok
    assert box.run("cat /tmp/note").stdout == "kept\n"
    with pytest.raises(SandboxError):
        box.run("pwd", cwd="..")


@needs_bwrap
def test_arguments_environment_and_long_commands_arrive_unchanged(box):
    """Commands reach the sandbox through a shell that joined its cgroups ahead of time: quoting must not matter."""
    odd = ["a b", "it's", 'say "hi"', "two\nlines\n", "  spaced  ", "back\\slash", "$HOME `id` $(id)", "-", ""]
    result = box.run(["python", "-c", "import os, sys; print(repr(sys.argv[1:]), os.environ['ODD'])", *odd],
                     env={"ODD": "x'y\nz", "-dash": "1"}, cwd="tests", stdin="ignored")  # fmt: skip
    assert result.ok and result.stdout == f"{odd!r} x'y\nz\n", result.output
    long = "x" * 100_000  # longer than what the waiting shell reads: started on its own
    assert box.run(f"echo {long} | wc -c").stdout.strip() == str(len(long) + 1)
    assert box.run("echo $ODD; pwd").stdout == "\n/workspace\n"  # nothing left over from the commands before


@needs_bwrap
@needs_cgroups
def test_a_dead_waiting_shell_is_replaced(project):
    """If the shell waiting in the cgroups for the next command died (e.g. killed), the command still runs, in the
    sandbox's cgroups."""
    with open_sandbox(project, limits=FAST) as sandbox:
        for marker in ("1000.6875", "1000.8125"):
            waiting = sandbox._resources.ready
            assert waiting is not None and waiting.poll() is None
            waiting.kill()
            waiting.wait()
            runner = threading.Thread(target=lambda m=marker: sandbox.run(f"sleep {m}", timeout=2))
            runner.start()
            deadline = time.monotonic() + 5
            while not sleeping(marker) and time.monotonic() < deadline:  # once sleep runs, all above it joined
                time.sleep(0.02)
            assert sleeping(marker)
            started = set(processes_matching(marker))  # the joining shell, bwrap's and the command's own processes
            for cgroup in sandbox.cgroups:
                assert started <= {int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()}
            runner.join()
        still_works(sandbox)


@needs_bwrap
def test_multiprocessing_works_inside(box):
    code = "import multiprocessing as mp; print(sum(mp.get_context('fork').Pool(2).map(abs, [-1, -2, 3])))"
    result = box.run(["python", "-c", code])
    assert result.stdout == "6\n", result.output


@needs_bwrap
def test_pytest_inside_reports_the_right_exit_code(box):
    passing = box.run("python -m pytest -q tests/test_ok.py")
    assert passing.exit_code == 0, passing.output
    assert "1 passed" in passing.stdout
    failing = box.run("python -m pytest -q tests/test_bad.py")
    assert failing.exit_code == 1, failing.output
    assert "1 failed" in failing.stdout


# ---- containment --------------------------------------------------------------------------------------------


@pytest.fixture
def host_server():
    """A TCP server on the host's loopback: the port a sandbox must not reach."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def connect(port: int) -> list[str]:
    return ["python", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"]


@needs_bwrap
def test_network_is_unreachable(box, host_server):
    internet = box.run(["python", "-c", "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"])
    assert internet.exit_code != 0 and "OSError" in internet.stderr
    resolve = box.run(["python", "-c", "import socket; socket.getaddrinfo('pypi.org', 443)"])
    assert resolve.exit_code != 0 and "gaierror" in resolve.stderr
    loopback = box.run(connect(host_server))
    assert loopback.exit_code != 0 and "ConnectionRefusedError" in loopback.stderr  # its own empty loopback
    still_works(box)


@needs_bwrap
def test_network_true_shares_the_host_network(project, host_server):
    with open_sandbox(project, limits=FAST, network=True) as sandbox:
        assert sandbox.run(connect(host_server)).ok


@needs_bwrap
def test_writes_outside_the_workdir_fail_and_leave_the_host_untouched(box, tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    targets = ["/etc/agentenv-escape", "/usr/agentenv-escape", str(PROJECT_DIR / "agentenv-escape"), str(host_file)]
    for target in targets:
        result = box.run(f"echo pwned > {target}")
        assert result.exit_code != 0, (target, result)
    assert host_file.read_text() == "original"
    for target in targets[:3]:
        assert not os.path.exists(target)
    still_works(box)


@needs_bwrap
def test_another_sandbox_workdir_cannot_be_read(project):
    with open_sandbox(project, limits=FAST) as first, open_sandbox(project, limits=FAST) as second:
        second.write_file("secret.txt", "the other sandbox's secret")
        assert second.run("cat secret.txt").stdout == "the other sandbox's secret"
        for path in (second.workdir / "secret.txt", second.workdir, second.workdir.parent):
            result = first.run(f"cat {path}/secret.txt {path}; ls {path}")
            assert result.exit_code != 0 and "secret" not in result.stdout, result
        if first.uid is not None:
            assert first.uid != second.uid
            assert first.run("id -u").stdout == f"{first.uid}\n"
        still_works(first)


# ---- what the sandbox sees ----------------------------------------------------------------------------------

#: Run inside a sandbox: every file and folder name under / (but /proc, /sys, /dev) that contains one of argv[1]'s
#: comma-separated names, then every file whose content holds one of the other arguments. Contents are searched
#: everywhere but in /usr and in site-packages folders (except their top-level files and anything named agentenv):
#: those hold GBs (torch) and grep takes minutes on them; their file names are searched all the same.
SEARCH = r"""
import os, subprocess, sys
names, needles = sys.argv[1].split(","), sys.argv[2:]
found, contents = [], []
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    found += [os.path.join(root, n) for n in files + dirs if any(name in n for name in names)]
    if os.path.basename(root) == "site-packages":
        contents += [os.path.join(root, n) for n in files + dirs if n in files or "agentenv" in n.lower()]
tops = ["/" + d for d in os.listdir("/") if d not in ("usr", "proc", "sys", "dev") and not os.path.islink("/" + d)]
grep = ["grep", "-rlsF", "--devices=skip", "--exclude-dir=site-packages", *(a for n in needles for a in ("-e", n))]
for paths in (tops + ["/dev/shm"], contents):
    found += subprocess.run(grep + paths, capture_output=True, text=True).stdout.split() if paths else []
print("\n".join(["searched", *found]))
"""


@pytest.fixture
def canaries():
    """A unique token in a gold-patch-like file in the project checkout, a file in the home folder and one in the
    AgentEnv cache (all removed afterwards)."""
    token = f"agentenv-canary-{uuid.uuid4().hex}"
    patch = f"diff --git a/calc.py b/calc.py\n-    return a - b\n+    return a + b  # {token}\n"
    cache = cache_root()
    made_cache = not cache.exists()
    files = [PROJECT_DIR / f"gold-{os.getpid()}.diff", Path.home() / f".{token}", cache / f"{token}.json"]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        for path in files:
            path.write_text(patch)
        yield token
    finally:
        for path in files:
            path.unlink(missing_ok=True)
        if made_cache:
            shutil.rmtree(cache, ignore_errors=True)


@needs_bwrap
def test_the_sandbox_sees_no_checkout_home_cache_or_gold_patches(canaries):
    """The whole visible file system holds neither the canaries (by name or content) nor the SWE tasks file."""
    assert (PROJECT_DIR / "envs" / "swe" / "data" / "tasks.jsonl").exists()  # on the host, with its gold patches
    with open_sandbox(None, limits=Limits(wall_seconds=120, output_bytes=100_000)) as sandbox:
        start = time.monotonic()
        result = sandbox.run(["python", "-c", SEARCH, f"{canaries},tasks.jsonl", canaries])
        print(f"searched the sandbox's file system in {time.monotonic() - start:.1f} s")
        assert result.ok and result.stdout.startswith("searched"), result.output
        assert result.stdout.split()[1:] == []
        listing = sandbox.run(f"ls -a / {PROJECT_DIR} {Path.home()}").stdout
        for hidden in ("opt", "srv", "mnt", "media", "var", "sys", "agentenv", "tests"):
            assert hidden not in listing.split(), listing


@needs_bwrap
def test_a_cache_inside_the_interpreters_folder_is_hidden(tmp_path, monkeypatch):
    """A folder of the view (here the venv) may hold the AgentEnv cache: the sandbox sees it empty."""
    cache = Path(sys.prefix) / f".agentenv-test-cache-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTENV_CACHE", str(cache))
    cache.mkdir()
    try:
        (cache / "entry.json").write_text("{}")
        with open_sandbox(None, limits=FAST) as sandbox:
            result = sandbox.run(f"ls -A {cache}; python -c 'print(42)'")
        assert result.ok and result.stdout == "42\n", result.output
    finally:
        shutil.rmtree(cache)


@pytest.fixture(scope="module")
def clone_venv():
    """A virtual environment in a CI-like clone under /tmp, with AgentEnv installed as a regular (not editable)
    package: its own folder in site-packages holding envs/ (gold patches in envs/swe/data/tasks.jsonl)."""
    from tests.test_packaging import _child_venv

    folder = Path(tempfile.mkdtemp(prefix="agentenv-test-clone-", dir="/tmp"))  # world-readable, like a CI clone
    folder.chmod(0o755)
    venv = folder / "venv"
    python = _child_venv(venv, parent_editables=False)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    package = Path(purelib) / "agentenv"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PROJECT_DIR / "agentenv", package, ignore=ignore)
    for name in ("envs", "rewards", "policies"):
        shutil.copytree(PROJECT_DIR / name, package / name, ignore=ignore)
    yield venv, python, package
    shutil.rmtree(folder, ignore_errors=True)


def in_child(python: Path, script: str) -> str:
    cwd = python.parent  # not the checkout, whose agentenv/ would come first on sys.path
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_bwrap
def test_an_interpreter_under_tmp_stays_visible(clone_venv):
    """The sandbox has its own /tmp: a virtual environment under the host's /tmp (a CI clone) must stay usable."""
    venv, python, _ = clone_venv
    script = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from agentenv.sandbox import open_sandbox\n"
        "with open_sandbox(None) as box:\n"
        "    print(box.run(\"python -c 'import sys; print(sys.prefix)'\").output.strip())\n"
    )
    assert in_child(python, script) == str(venv)


@needs_bwrap
def test_an_installed_agentenv_package_is_hidden(clone_venv):
    """A regular install puts AgentEnv's data (gold patches) in site-packages, which the sandbox shows: not that."""
    _, python, package = clone_venv
    tasks = package / "envs" / "swe" / "data" / "tasks.jsonl"
    script = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "import agentenv\n"
        "from agentenv.sandbox import open_sandbox\n"
        "print(agentenv.__file__)\n"
        "with open_sandbox(None) as box:\n"
        f"    print(box.run('ls -A {package}; cat {tasks}; python -c \"import agentenv.envs.swe\"').output)\n"
    )
    module, output = in_child(python, script).split("\n", 1)
    assert Path(module).parent == package and tasks.exists()  # the child really runs the installed copy
    assert "No such file or directory" in output and "No module named 'agentenv.envs'" in output, output
    assert "instance_id" not in output and "__init__.py" not in output, output


@needs_bwrap
def test_fork_bomb_is_contained(project):
    limits = Limits(wall_seconds=10, processes=64, output_bytes=4_000)
    with open_sandbox(project, limits=limits) as sandbox:
        peak, done = [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], processes_of_uid(sandbox.uid))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        if sandbox.uid is not None:
            watcher.start()
        start = time.monotonic()
        result = sandbox.run(":(){ :|:& };:; sleep 2", timeout=3)
        elapsed = time.monotonic() - start
        done.set()
        if sandbox.uid is not None:
            watcher.join()
            assert 0 < peak[0] <= limits.processes
            assert processes_of_uid(sandbox.uid) == 0
        assert elapsed < 8
        assert "Resource temporarily unavailable" in result.stderr
        assert subprocess.run(["true"]).returncode == 0  # the host can still fork
        still_works(sandbox)


@needs_bwrap
def test_huge_allocation_fails_without_harming_the_host(box):
    result = box.run(["python", "-c", "x = bytearray(16 * 2**30)"])
    assert result.exit_code != 0
    assert "MemoryError" in result.stderr or result.killed
    still_works(box)


@needs_bwrap
def test_timeout_kills_every_process_of_the_command(box):
    start = time.monotonic()
    result = box.run("sleep 1000.25 & sleep 1000.5", timeout=1)
    assert result.timed_out and result.exit_code is None and "timed out" in result.killed
    assert time.monotonic() - start < 5
    assert processes_matching("1000.25") == [] and processes_matching("1000.5") == []
    still_works(box)


@needs_bwrap
def test_background_processes_end_with_the_command(box):
    result = box.run("sleep 1000.75 & echo started", timeout=5)
    assert result.ok and result.duration < 4
    assert processes_matching("1000.75") == []


@needs_bwrap
def test_huge_output_is_truncated_keeping_head_and_tail(box):
    result = box.run(["python", "-c", "print('BEGIN'); print('x' * 10**7); print('END')"])
    assert result.ok and result.truncated
    assert len(result.stdout) < 2 * FAST.output_bytes
    assert result.stdout.startswith("BEGIN") and result.stdout.endswith("END\n")
    assert "bytes of stdout dropped" in result.stdout
    still_works(box)


@needs_bwrap
def test_file_size_limit_kills_with_a_reason(project):
    with open_sandbox(project, limits=Limits(file_size_mb=1)) as sandbox:
        result = sandbox.run("head -c 5000000 /dev/zero > big.bin")
        assert result.exit_code == 128 + 25 and "file_size_mb" in result.killed  # SIGXFSZ
        assert (sandbox.workdir / "big.bin").stat().st_size == 2**20


# ---- limits of the whole sandbox ----------------------------------------------------------------------------


@needs_bwrap
@needs_cgroups
def test_memory_limit_holds_for_the_whole_sandbox(project):
    """Two processes of 160 MB each fit memory_mb=256 one by one (each under its RLIMIT_AS), not together."""
    limits = Limits(wall_seconds=30, memory_mb=256, output_bytes=4_000)
    eat = "python -c 'import time; x = b\"x\" * (160 * 2**20); time.sleep(1.5)'"
    with open_sandbox(project, limits=limits) as sandbox:
        assert sandbox.limit_mode["memory_mb"].startswith("cgroup"), sandbox.limit_mode
        alone = sandbox.run(eat)
        assert alone.ok and alone.killed is None, alone.output
        both = sandbox.run(f'{eat} & first=$!; {eat}; second=$?; wait $first; echo "$? $second"')
        usage = sandbox.usage()
        print(f"exit codes {both.stdout.strip()}, {both.killed}; peak {usage['memory_peak_bytes'] / MB:.0f} MB")
        assert "137" in both.stdout.split(), both.output  # one of them was killed (SIGKILL)...
        assert both.killed == "killed (SIGKILL): out of memory (memory_mb, whole sandbox)"
        assert usage["memory_peak_bytes"] <= limits.memory_mb * MB  # ...before they held more than memory_mb
        still_works(sandbox)


@needs_bwrap
@needs_cgroups
def test_process_limit_holds_for_the_whole_sandbox(project):
    """100 processes asked for, at most ``processes`` tasks at once, bwrap's two and the starter included."""
    limits = Limits(wall_seconds=30, processes=32, output_bytes=4_000)
    spawn = (
        "import subprocess\nstarted, refused = [], 0\nfor _ in range(100):\n"
        "    try:\n        started.append(subprocess.Popen(['sleep', '5']))\n"
        "    except OSError:\n        refused += 1\n"
        "print(len(started), refused)\nfor p in started:\n    p.kill()\n"
    )
    with open_sandbox(project, limits=limits) as sandbox:
        assert sandbox.limit_mode["processes"].startswith("cgroup"), sandbox.limit_mode
        peak, done = [0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], sandbox.usage()["processes"])
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = sandbox.run(["python", "-c", spawn])
        finally:
            done.set()
            watcher.join()
        started, refused = map(int, result.stdout.split())
        peak[0] = max(peak[0], sandbox.usage().get("processes_peak", 0))
        print(f"started {started} of 100 sleeps, refused {refused}; peak {peak[0]} tasks")
        assert started + refused == 100 and refused > 0
        assert started <= limits.processes - 3  # bwrap, its PID 1 and python count too (the uid's rlimit: 31)
        assert 0 < peak[0] <= limits.processes
        still_works(sandbox)


@needs_bwrap
@needs_cgroups
def test_disk_quota_holds_for_workdir_and_tmp_together(project):
    """Three files of 40 MB into the workdir and /tmp under disk_mb=64: the second fills the quota, none reach the
    host's disk (the sandbox's folder is a tmpfs of its own)."""
    limits = Limits(wall_seconds=30, disk_mb=64, output_bytes=4_000)
    write = 'for f in a.bin /tmp/b.bin c.bin; do head -c 41943040 /dev/zero > $f || echo "full: $f"; done'
    with open_sandbox(project, limits=limits) as sandbox:
        assert sandbox.limit_mode["disk_mb"].startswith("tmpfs"), sandbox.limit_mode
        result = sandbox.run(write)
        written = [sandbox.workdir / "a.bin", sandbox.tmp / "b.bin", sandbox.workdir / "c.bin"]
        sizes = [p.stat().st_size if p.exists() else 0 for p in written]
        usage = sandbox.usage()
        print(f"written {[s // MB for s in sizes]} MB, disk used {usage['disk_bytes'] / MB:.1f} MB")
        assert "No space left on device" in result.stderr, result.output
        assert "full: /tmp/b.bin" in result.stdout and "full: c.bin" in result.stdout
        assert sum(sizes) <= limits.disk_mb * MB and usage["disk_bytes"] <= limits.disk_mb * MB
        host_tmp = os.stat(tempfile.gettempdir()).st_dev
        assert {os.stat(p).st_dev for p in (sandbox.workdir, sandbox.tmp)} != {host_tmp}
        assert str(sandbox.workdir.parent) in mount_points()
        assert sandbox.run("rm /workspace/a.bin && head -c 1000000 /dev/zero > /tmp/c.bin").ok  # room again
        still_works(sandbox)


@needs_bwrap
@needs_cgroups
def test_close_removes_the_cgroups_and_the_mount_even_with_a_command_running(project):
    sandbox = open_sandbox(project, limits=FAST)
    cgroups, folder = sandbox.cgroups, sandbox.workdir.parent
    assert cgroups and all(c.is_dir() for c in cgroups) and str(folder) in mount_points()
    runner = threading.Thread(target=lambda: sandbox.run("sleep 1000.375 & sleep 1000.4375", timeout=60))
    runner.start()
    deadline = time.monotonic() + 5
    while not processes_matching("1000.4375") and time.monotonic() < deadline:
        time.sleep(0.02)
    sandbox.close()
    runner.join(timeout=10)
    assert not any(c.exists() for c in cgroups)
    assert str(folder) not in mount_points() and not folder.exists()
    assert processes_matching("1000.375") == []


@needs_bwrap
def test_without_cgroups_and_tmpfs_the_limits_fall_back_and_warn_once(project):
    """The switches turn the per-sandbox limits off (as a machine without them would): per-process rlimits, one
    warning per missing kind for the whole process."""
    script = textwrap.dedent(f"""
        import os, warnings
        from agentenv.sandbox import open_sandbox
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                with open_sandbox({str(project)!r}) as box:
                    assert box.cgroups == () and not os.path.ismount(box.workdir.parent)
                    assert box.run("true").ok
        print(box.limit_mode["memory_mb"])
        print(box.limit_mode["disk_mb"])
        print(len(caught))
        for warning in caught:
            print(warning.message)
        """)
    env = {**os.environ, CGROUPS_SWITCH: "0", DISK_QUOTA_SWITCH: "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    memory, disk, count, *messages = done.stdout.splitlines()
    assert memory.startswith("rlimit: each process") and CGROUPS_SWITCH in memory
    assert disk.startswith("file_size_mb: each file") and DISK_QUOTA_SWITCH in disk
    assert count == "2", messages
    assert "without cgroups" in messages[0] and "without a disk quota" in messages[1]


# ---- files --------------------------------------------------------------------------------------------------


@needs_bwrap
def test_file_ops_see_what_commands_see(box):
    box.write_file("pkg/new/module.py", "VALUE = 1\n")
    assert box.exists("pkg/new/module.py") and box.exists("/workspace/pkg/new")
    assert box.run("echo 'OTHER = 2' >> pkg/new/module.py").ok  # written by the host, writable by the command
    assert box.read_file("/workspace/pkg/new/module.py") == "VALUE = 1\nOTHER = 2\n"
    assert box.run("ln -s /workspace/calc.py absolute; ln -s ../calc.py tests/relative").ok
    assert box.read_file("absolute") == box.read_file("tests/relative") == box.read_file("calc.py")
    assert not box.exists("missing.txt")
    with pytest.raises(FileNotFoundError):
        box.read_file("missing.txt")
    with pytest.raises(IsADirectoryError):
        box.read_file("tests")
    assert box.run("mkfifo pipe").ok
    with pytest.raises(SandboxError, match="regular file"):  # and does not block on the FIFO
        box.read_file("pipe")


@needs_bwrap
@pytest.mark.parametrize(
    "path", ["../outside.txt", "tests/../../outside.txt", "/etc/passwd", "/workspace/../etc/passwd"]
)
def test_file_ops_refuse_paths_that_leave_the_root(box, path):
    for operation in (box.read_file, box.exists, lambda p: box.write_file(p, "x")):
        with pytest.raises(SandboxError):
            operation(path)
    assert not (box.workdir.parent / "outside.txt").exists()


@needs_bwrap
def test_file_ops_refuse_symlinks_that_leave_the_root(box):
    assert box.run("ln -s /etc/passwd leak; ln -s /etc etc; ln -s ../.. up").ok
    for path in ("leak", "etc/hostname", "up/x", "etc/new-file"):
        with pytest.raises(SandboxError, match=r"symlink|leaves"):
            box.read_file(path)
        with pytest.raises(SandboxError):
            box.write_file(path, "pwned")
    assert not os.path.exists("/etc/new-file")
    still_works(box)


# ---- life cycle ---------------------------------------------------------------------------------------------


@needs_bwrap
def test_close_removes_the_workdir_and_is_idempotent(project):
    sandbox = open_sandbox(project, limits=FAST)
    folder = sandbox.workdir.parent
    assert (sandbox.workdir / "calc.py").exists()
    sandbox.close()
    assert not folder.exists()
    sandbox.close()
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run("true")


@needs_bwrap
def test_close_kills_a_running_command(project):
    sandbox = open_sandbox(project, limits=FAST)
    results = []
    runner = threading.Thread(target=lambda: results.append(sandbox.run("sleep 1000.875", timeout=60)))
    runner.start()
    deadline = time.monotonic() + 5
    while not processes_matching("1000.875") and time.monotonic() < deadline:
        time.sleep(0.02)
    sandbox.close()
    runner.join(timeout=10)
    assert not runner.is_alive() and results[0].exit_code != 0
    assert processes_matching("1000.875") == []


def test_interpreter_exit_removes_sandboxes_left_open(project, tmp_path):
    backend = "bubblewrap" if BACKENDS["bubblewrap"] is None else "local"
    script = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("ignore")
        from agentenv.sandbox import open_sandbox
        box = open_sandbox({str(project)!r}, backend={backend!r}, base_dir={str(tmp_path)!r})
        print(box.workdir)
        print(*box.cgroups)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    workdir, cgroups = done.stdout.splitlines()
    assert Path(workdir).parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == [] and str(Path(workdir).parent) not in mount_points()
    assert not any(Path(c).exists() for c in cgroups.split())


@needs_bwrap
def test_workdir_pool_hands_out_fresh_copies(project, tmp_path):
    with WorkdirPool(project, size=2, base_dir=tmp_path) as pool:
        copy = pool.take()
        assert (copy / "calc.py").read_text() == (project / "calc.py").read_text()
        with open_sandbox(pool, limits=FAST) as sandbox:
            assert sandbox.run("cat calc.py").stdout == (project / "calc.py").read_text()
            sandbox.write_file("calc.py", "changed")
            with open_sandbox(pool, limits=FAST) as other:
                assert other.read_file("calc.py") == (project / "calc.py").read_text()
            pool.close()
            assert sandbox.read_file("calc.py") == "changed"  # the sandbox owns its copy
        assert not pool.folder.exists()
    assert list(tmp_path.iterdir()) == []


# ---- other backends -----------------------------------------------------------------------------------------


def test_local_backend_warns_and_applies_timeout_and_confinement(project):
    with pytest.warns(UserWarning, match="without isolation"):
        sandbox = open_sandbox(project, backend="local", limits=FAST)
    with sandbox:
        assert sandbox.root == str(sandbox.workdir)
        assert sandbox.run("pwd").stdout == f"{sandbox.workdir}\n"
        result = sandbox.run("sleep 1000.625", timeout=0.5)
        assert result.timed_out and processes_matching("1000.625") == []
        with pytest.raises(SandboxError):
            sandbox.read_file("../x")


@needs_cgroups
def test_local_backend_has_the_sandbox_limits_too(project):
    """The debugging backend gets the same cgroups and disk quota: what a command leaves behind, even in a session
    of its own, dies at close."""
    with pytest.warns(UserWarning, match="without isolation"):
        sandbox = open_sandbox(project, backend="local", limits=Limits(wall_seconds=10, disk_mb=8))
    with sandbox:
        mode = sandbox.limit_mode
        assert mode["memory_mb"].startswith("cgroup") and mode["disk_mb"].startswith("tmpfs"), mode
        full = sandbox.run("head -c 16000000 /dev/zero > big.bin")
        assert full.exit_code != 0 and "No space left on device" in full.stderr, full.output
        quiet = "stdout=s.DEVNULL, stderr=s.DEVNULL"
        leave = f"import subprocess as s; s.Popen(['sleep', '1000.5625'], start_new_session=True, {quiet})"
        assert sandbox.run(["python", "-c", leave]).ok  # Popen returns once sleep runs, in a session of its own
        assert processes_matching("1000.5625")
    assert processes_matching("1000.5625") == []


def test_docker_backend_says_why_it_cannot_run():
    if BACKENDS["docker"] is None:
        pytest.skip("a Docker engine is reachable: see test_docker_backend_runs_commands")
    with pytest.raises(ConfigError, match="docker"):
        open_sandbox(backend="docker")


@needs_docker
def test_docker_backend_runs_commands(project):
    with warnings.catch_warnings(), open_sandbox(project, backend="docker", limits=FAST) as sandbox:
        assert sandbox.run("cat calc.py").stdout == (project / "calc.py").read_text()
        assert sandbox.run("sleep 100", timeout=1).timed_out
        sandbox.write_file("notes/a.txt", "hello")
        assert sandbox.read_file("/workspace/notes/a.txt") == "hello"
        with pytest.raises(SandboxError):
            sandbox.read_file("../etc/passwd")
