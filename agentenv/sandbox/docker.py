"""The ``docker`` backend: one container per sandbox through the Docker SDK, imported only when used
(``pip install 'agentenv[docker]'``); containers are labelled with their owner, so that those of dead processes can be
removed (:func:`remove_stale_containers`)."""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import socket
import tarfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_range
from agentenv.sandbox.base import READ_LIMIT, Sandbox, _check_text
from agentenv.sandbox.errors import FileTooLargeError, SandboxError
from agentenv.sandbox.limits import Limits
from agentenv.sandbox.process import (
    INLINE_COMMAND_MAX,
    ExecResult,
    _argv_bytes,
    _Capture,
    _kill_reason,
    _script,
    _shell,
)

DEFAULT_IMAGE = "python:3.11-slim"

#: Label on docker containers made by this backend (value: ``<hostname>:<pid>`` of the owning process).
DOCKER_LABEL = "agentenv.sandbox"


def _import_docker() -> Any:
    try:
        import docker
    except ImportError as e:
        raise ConfigError("backend='docker' needs the Docker SDK: pip install 'agentenv[docker]'") from e
    return docker


def _owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _remove_container(client: Any, container_id: str) -> None:
    with contextlib.suppress(Exception):  # already gone, or the engine went away: nothing left to do at exit
        client.api.remove_container(container_id, force=True)


def remove_stale_containers(client: Any = None, *, all_owners: bool = False) -> int:
    """Remove sandbox containers whose owning process on this host is gone (every one with ``all_owners``).

    Returns how many were removed.
    """
    docker = _import_docker()
    client = client or docker.from_env()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": DOCKER_LABEL}):
        host, _, pid = container.labels.get(DOCKER_LABEL, "").rpartition(":")
        if not all_owners:
            if host != socket.gethostname() or not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # its owner is alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        container.remove(force=True)
        removed += 1
    return removed


def _tar_file(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerSandbox(Sandbox):
    """One container per sandbox; the workdir lives only in the container (``workdir`` is ``None``).

    Containers run ``sleep infinity`` under docker's init with no network, all capabilities dropped,
    ``no-new-privileges``, cgroup memory (``memory_mb``, no swap) and pids (``processes``) limits and ``cpus``
    CPUs; each command runs as ``timeout -k 1 <t> bash -c ...``. Processes a command leaves in the background
    keep running until the sandbox closes.
    """

    backend = "docker"

    def __init__(
        self,
        source: Path | None,
        *,
        limits: Limits,
        root: str,
        image: str | None = None,
        network: bool = False,
        cpus: float = 1.0,
        client: Any = None,
    ):
        check_range("cpus", cpus, 0.01)
        if not root.startswith("/") or posixpath.normpath(root) != root or root == "/":
            raise ConfigError(f"root={root!r} must be a normalised absolute path other than '/'")
        docker = _import_docker()
        super().__init__(None, limits=limits, root=root, folder=None)
        self.image = image or DEFAULT_IMAGE
        self._client = client or docker.from_env()
        mb = 2**20
        ulimits = [
            docker.types.Ulimit(name="fsize", soft=limits.file_size_mb * mb, hard=limits.file_size_mb * mb),
            docker.types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ]
        container = self._client.containers.run(
            self.image,
            command=["sleep", "infinity"],
            detach=True,
            init=True,
            labels={DOCKER_LABEL: _owner_label()},
            network_mode=None if network else "none",
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            pids_limit=limits.processes,
            nano_cpus=int(cpus * 1e9),
            ulimits=ulimits,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
        self.container_id = container.id
        self.limit_mode = {"memory_mb": "cgroup (docker): whole sandbox", "processes": "cgroup (docker): whole sandbox"}
        self.limit_mode["disk_mb"] = "file_size_mb: each file: no disk quota in the docker backend"
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _remove_container, self._client, container.id)
        self._shell = ["bash", "-c"] if self._exec(["test", "-x", "/bin/bash"])[0] == 0 else ["sh", "-c"]
        self._exec(["mkdir", "-p", root])
        if source is not None:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(source, arcname=".")
            self._client.api.put_archive(container.id, root, buffer.getvalue())

    def _exec(self, argv: list[str], workdir: str = "/") -> tuple[int, bytes]:
        api = self._client.api
        exec_id = api.exec_create(self.container_id, argv, workdir=workdir)["Id"]
        output = api.exec_start(exec_id)
        return api.exec_inspect(exec_id)["ExitCode"], output

    def _run(
        self, argv: list[str], shown: str, *, timeout: float, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> ExecResult:
        if argv[:2] == list(_shell()):
            argv = [*self._shell, argv[2]]
        workdir = self._resolve(cwd) if cwd is not None else self.root
        if _argv_bytes(argv) > INLINE_COMMAND_MAX:  # beyond what exec takes as arguments: a script file instead
            name = f".agentenv-command-{uuid.uuid4().hex}"
            self._client.api.put_archive(self.container_id, "/tmp", _tar_file(name, _script(argv, self._shell[0])))
            argv = [self._shell[0], f"/tmp/{name}"]
        if stdin is not None:  # exec has no simple stdin: put it in a file and redirect
            name = f".agentenv-stdin-{time.monotonic_ns()}"
            self._client.api.put_archive(self.container_id, "/tmp", _tar_file(name, stdin.encode("utf-8")))
            argv = ["sh", "-c", f'exec "$@" < /tmp/{name}', "sh", *argv]
        wrapped = ["timeout", "-k", "1", f"{timeout:g}", *argv]
        api = self._client.api
        full_env = {"LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
        full_env.update({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env})
        start = time.monotonic()
        exec_id = api.exec_create(self.container_id, wrapped, workdir=workdir, environment=full_env)["Id"]
        out, err = _Capture(self.limits.output_bytes), _Capture(self.limits.output_bytes)
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            if chunk_out:
                out.feed(chunk_out)
            if chunk_err:
                err.feed(chunk_err)
        duration = time.monotonic() - start
        code = api.exec_inspect(exec_id)["ExitCode"]
        timed_out = code in (124, 137) and duration >= timeout - 0.05
        exit_code = None if timed_out else code
        killed = f"timed out after {timeout:g} s: killed" if timed_out else _kill_reason(code)
        return ExecResult(shown, exit_code, out.text("stdout"), err.text("stderr"), timed_out, duration, killed,
                          out.truncated or err.truncated)  # fmt: skip

    def _resolve(self, path: str) -> str:
        """``path`` resolved inside the container (``realpath -m``), checked to stay under the root."""
        _check_text("path", path)
        joined = posixpath.join(self.root, path)
        code, output = self._exec(["realpath", "-m", "--", joined])
        resolved = output.decode("utf-8", errors="replace").strip()
        root = self.root.rstrip("/")
        if code != 0 or (resolved != root and not resolved.startswith(root + "/")):
            raise SandboxError(f"{path!r} is outside the sandbox root {self.root}")
        return resolved

    def read_bytes(self, path: str, *, max_bytes: int = READ_LIMIT) -> bytes:
        from docker.errors import NotFound

        resolved = self._resolve(path)
        try:
            stream, info = self._client.api.get_archive(self.container_id, resolved)
        except NotFound:
            raise FileNotFoundError(f"{path}: no such file") from None
        if info.get("mode", 0) & (1 << 31):  # Go's os.ModeDir
            raise IsADirectoryError(f"{path} is a directory")
        if info.get("size", 0) > max_bytes:
            raise FileTooLargeError(f"{path!r} has more than max_bytes={max_bytes} bytes")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member is not None and member.isreg() else None
            if extracted is None:
                raise SandboxError(f"{path!r} is not a regular file")
            data = extracted.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise FileTooLargeError(f"{path!r} has more than max_bytes={max_bytes} bytes")
            return data

    def write_file(self, path: str, text: str) -> None:
        resolved = self._resolve(path)
        if resolved == self.root.rstrip("/"):
            raise IsADirectoryError(f"{path!r} is the sandbox root")
        folder, name = posixpath.split(resolved)
        code, output = self._exec(["mkdir", "-p", "--", folder])
        if code != 0:
            raise NotADirectoryError(f"{path}: {output.decode('utf-8', errors='replace').strip()}")
        self._client.api.put_archive(self.container_id, folder, _tar_file(name, text.encode("utf-8")))

    def exists(self, path: str) -> bool:
        return self._exec(["test", "-e", self._resolve(path)])[0] == 0


def _docker_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the Docker SDK is not installed: pip install 'agentenv[docker]'"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # the SDK raises DockerException, requests' errors, FileNotFoundError...
        return f"no Docker engine reachable: {e}"
    return None
