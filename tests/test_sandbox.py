"""The sandbox against a real bubblewrap: each escape attempt fails and the sandbox keeps working afterwards."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from agentenv.errors import ConfigError
from agentenv.sandbox import (
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
    ("field", "value"), [("wall_seconds", 0), ("memory_mb", 0), ("processes", 1.5), ("output_bytes", -1)]
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
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


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


@needs_bwrap
def test_an_interpreter_under_tmp_stays_visible():
    """The sandbox has its own /tmp: a virtual environment under the host's /tmp (a CI clone) must stay usable."""
    from tests.test_packaging import _child_venv

    folder = Path(tempfile.mkdtemp(prefix="agentenv-test-clone-", dir="/tmp"))  # world-readable, like a CI clone
    folder.chmod(0o755)
    venv = folder / "venv"
    python = _child_venv(venv, parent_editables=True)
    script = (
        "from agentenv.sandbox import open_sandbox\n"
        "with open_sandbox(None) as box:\n"
        "    print(box.run(\"python -c 'import sys; print(sys.prefix)'\").output.strip())\n"
    )
    try:
        out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(venv)
