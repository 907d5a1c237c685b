"""What the backends whose commands are host processes (bubblewrap, local) share: the workdir on the host, the
sandbox's cgroups and the shell waiting in them, long commands passed as script files, the clean environment, the
timeout and the output cap (:class:`_ProcessSandbox`)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from agentenv.sandbox.base import Sandbox
from agentenv.sandbox.cgroups import _END_OF_COMMAND, _READY_SCRIPT_MAX, _Cgroups, _cgroups_off
from agentenv.sandbox.errors import SandboxError
from agentenv.sandbox.limits import Limits, _limit_mode
from agentenv.sandbox.process import (
    _OOM_REASON,
    INLINE_COMMAND_MAX,
    ExecResult,
    _argv_bytes,
    _communicate,
    _discard,
    _kill_group,
    _kill_reason,
    _script,
    _shell,
)

_ENV = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "env"


def _clean_env(home: str, tmp: str) -> dict[str, str]:
    """A minimal environment, not the host's: the project's interpreter first on PATH."""
    path = [os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
    path += ["/sbin", "/bin"]
    return {
        "PATH": ":".join(dict.fromkeys(path)),
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


class _ProcessSandbox(Sandbox):
    """A backend whose commands are host processes reading pipes: the timeout and output cap live here."""

    def __init__(self, workdir: Path, *, limits: Limits, root: str, folder: Path, no_disk_quota: str | None):
        super().__init__(workdir, limits=limits, root=root, folder=folder)
        self.tmp = folder / "tmp"  # the commands' /tmp and HOME, kept between commands
        self.tmp.mkdir()
        no_cgroups = _cgroups_off()
        if no_cgroups is None:
            try:
                self._resources.cgroups = _Cgroups(limits)
            except OSError as e:
                no_cgroups = f"no usable cgroups ({e})"
        version = self._resources.cgroups.version if self._resources.cgroups is not None else None
        self.limit_mode = _limit_mode(version, no_cgroups, no_disk_quota, backend=self.backend)

    def _popen(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str], str | None]:
        """The host argv, environment and working directory that run ``argv`` in ``cwd`` (as the sandbox sees it)."""
        raise NotImplementedError

    def _cwd(self, cwd: str | None) -> str:
        """The command's working directory as the sandbox sees it (checked to be a folder inside the root)."""
        if cwd is None:
            return self.root
        host = self._host_path(cwd)
        if not host.is_dir():
            raise SandboxError(f"cwd={cwd!r} is not a folder in the sandbox")
        assert self.workdir is not None
        relative = host.relative_to(self.workdir).as_posix()
        return self.root if relative == "." else posixpath.join(self.root, relative)

    def _run(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        sandbox_cwd = self._cwd(cwd)
        if _argv_bytes(argv) <= INLINE_COMMAND_MAX:
            return self._run_argv(argv, shown, timeout=timeout, cwd=sandbox_cwd, env=env, stdin=stdin)
        name = f".agentenv-command-{uuid.uuid4().hex}"
        script = self.tmp / name
        try:
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "wb") as f:
                f.write(_script(argv, _shell()[0]))
        except OSError as e:  # the sandbox's disk is full, or its /tmp is gone
            with contextlib.suppress(OSError):
                script.unlink()
            problem = f"the command ({_argv_bytes(argv)} bytes) could not be passed to the sandbox: {e.strerror or e}"
            return ExecResult(shown, 126, "", problem + "\n", False, 0.0)
        try:
            inside = posixpath.join(self._tmp_inside, name)
            return self._run_argv([_shell()[0], inside], shown, timeout=timeout, cwd=sandbox_cwd, env=env, stdin=stdin)
        finally:
            with contextlib.suppress(OSError):
                script.unlink()

    @property
    def _tmp_inside(self) -> str:
        """The sandbox's ``/tmp`` as its commands see it."""
        return "/tmp"

    def _run_argv(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        popen_argv, popen_env, popen_cwd = self._popen(argv, cwd, env)
        cgroups = self._resources.cgroups
        oom_kills = cgroups.oom_kills() if cgroups is not None else 0
        start = time.monotonic()
        data = stdin.encode("utf-8") if stdin is not None else None
        process, data = self._start(popen_argv, popen_env, popen_cwd, data)
        try:
            out, err, timed_out = _communicate(process, data, start + timeout, self.limits.output_bytes)
        finally:
            if process.returncode is None:  # an exception (e.g. KeyboardInterrupt) while it ran
                _kill_group(process)
                process.wait()
            with self._resources.lock:
                self._resources.processes.discard(process)
        duration = time.monotonic() - start
        code = process.returncode
        if timed_out:
            exit_code, killed = None, f"timed out after {timeout:g} s: killed"
        else:
            exit_code = 128 - code if code < 0 else code  # killed outside the sandbox: report like a shell
            killed = _kill_reason(exit_code)
            if cgroups is not None and cgroups.oom_kills() > oom_kills:
                killed = _OOM_REASON
        return ExecResult(
            command=shown,
            exit_code=exit_code,
            stdout=out.text("stdout"),
            stderr=err.text("stderr"),
            timed_out=timed_out,
            duration=duration,
            killed=killed,
            truncated=out.truncated or err.truncated,
        )

    def _start(
        self, argv: list[str], env: dict[str, str], cwd: str | None, stdin: bytes | None
    ) -> tuple[subprocess.Popen, bytes | None]:
        """The command's process (tracked for close) and the bytes to write to its stdin.

        With cgroups, the ready shell (already in them) runs the command it reads first from its stdin; without one
        (another thread took it, it died, the command is too long) a new process joins the cgroups, then runs it.
        """
        cgroups = self._resources.cgroups
        if cgroups is not None:
            with self._resources.lock:
                ready, self._resources.ready = self._resources.ready, None
            script = self._ready_script(argv, env, cwd)
            if ready is not None and ready.poll() is None and len(script) <= _READY_SCRIPT_MAX:
                with self._resources.lock:
                    self._resources.processes.add(ready)
                self._make_ready()  # for the next command: it joins the cgroups while this one runs
                return ready, script + (stdin or b"")
            if ready is not None:
                _discard(ready)
            self._make_ready()
            argv = cgroups.join(argv)
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: the timeout kills the group
        )
        with self._resources.lock:
            self._resources.processes.add(process)
        return process, stdin

    def _ready_env(self) -> dict[str, str]:
        return self._popen([], self.root, {})[1]

    def _make_ready(self) -> None:
        """Start the shell that will run the next command, already in the sandbox's cgroups (see :data:`_READY`)."""
        cgroups = self._resources.cgroups
        if cgroups is None:
            return
        pipe = subprocess.PIPE
        try:
            process: subprocess.Popen | None = subprocess.Popen(
                cgroups.ready(), stdin=pipe, stdout=pipe, stderr=pipe, env=self._ready_env(), start_new_session=True
            )
        except OSError:  # e.g. no process left to the host: the next command joins the cgroups itself
            return
        with self._resources.lock:
            if not self._resources.released and self._resources.ready is None:
                self._resources.ready, process = process, None
        if process is not None:  # closed meanwhile, or another thread made one
            _discard(process)

    def _ready_script(self, argv: list[str], env: dict[str, str], cwd: str | None) -> bytes:
        """What the ready shell runs for ``argv`` (with ``env`` in ``cwd``), ended by :data:`_END_OF_COMMAND`."""
        if env != self._ready_env():
            argv = [_ENV, "-i", "--", *(f"{key}={value}" for key, value in env.items()), *argv]
        script = f"cd -- {shlex.quote(cwd)} || exit 126\n" if cwd is not None else ""
        script += f"exec {shlex.join(argv)}\n{_END_OF_COMMAND}\n"
        return os.fsencode(script)
