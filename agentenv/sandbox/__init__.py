"""Run untrusted commands (an agent's ``bash``, a repository's tests) in a sandbox with limits.

:func:`open_sandbox` copies a source directory into a fresh workdir and returns a :class:`Sandbox`; ``run`` executes
a command there and returns an :class:`ExecResult` (a non-zero exit, a timeout, a memory error are data, never
exceptions); ``read_file`` / ``write_file`` / ``exists`` act on the workdir and refuse paths that leave it
(:class:`SandboxError`). Backends:

``bubblewrap`` (default, no daemon)
    Each command runs in fresh namespaces (``bwrap``) that show a minimal file system:

    - read-only: the system folders :data:`SYSTEM_FOLDERS` (``/usr``, ``/etc``, ``/bin``, ``/lib``...; symlinks stay
      symlinks) and this interpreter's folders (``sys.prefix``, ``sys.base_prefix``, ``sys.exec_prefix``, the
      executable's folder; the folders above them appear empty), so that the project's ``python`` and its packages
      (``pytest``...) run inside; inside those, the ``agentenv`` package itself (and its ``envs``/``rewards``/
      ``policies`` folders, and the source checkout of an editable install), the AgentEnv cache
      (:func:`agentenv.cache.cache_root`) and the folder that holds the workdirs are empty;
    - writable: ``/workspace`` (the workdir) and the sandbox's own ``/tmp`` (``HOME`` and ``TMPDIR``; both kept
      between its commands), a ``/dev/shm`` of at most ``memory_mb``;
    - ``/proc`` of its own PID namespace, a minimal ``/dev``, an empty ``/run`` (no daemon sockets);
    - nothing else of the host: no ``/root``, ``/home``, ``/work``, ``/opt``, ``/srv``, ``/mnt``, ``/var``, ``/sys``,
      no project checkout, no other sandbox's workdir.

    No network, not even the host's loopback; its own PID namespace, so when the command's first process exits or
    is killed, every process it started dies with it (a timeout kills the whole tree, nothing is left behind).
    About +9 ms per command (``benchmarks/sandbox_overhead.py``).

    Fork bombs: ``RLIMIT_NPROC`` does not apply to uid 0, and a user namespace made by root still maps to uid 0.
    So when AgentEnv runs as root, bwrap runs without a user namespace and the command drops (``setpriv``) to a
    uid of its own, one per live sandbox (:data:`SANDBOX_UID_BASE` + slot), which ``RLIMIT_NPROC`` then counts
    exactly; that uid also cannot read root's private files. Run as a normal user, bwrap makes a user namespace
    and ``RLIMIT_NPROC``, set inside it, counts only the sandbox's processes. The command's PID 1 is a shell that
    reaps the orphans (:data:`_INIT`).
``docker``
    One container per sandbox (docker SDK, ``pip install 'agentenv[docker]'``): no network, cgroup memory and
    process limits, the workdir copied in; containers are labelled and removed on close or at exit
    (:func:`remove_stale_containers` removes those of crashed processes).
``local``
    A plain subprocess in the workdir with the same limits and timeout but no isolation, for debugging; it warns.

Limits (:class:`Limits`) of the bubblewrap and local backends, see :func:`limit_support` for what holds here:

- per sandbox, through cgroups (v2, or v1 ``memory`` and ``pids`` hierarchies; one cgroup per sandbox, a child of
  this process's own, made at open and removed at close): ``memory_mb`` bounds the memory of all of the sandbox's
  processes together (no swap) and ``processes`` their number (every task: bwrap's own two and the waiting shell
  below included). Each
  command is in the cgroups before ``bwrap`` starts: a shell that joined them ahead of time runs it, because
  joining waits for an RCU grace period (~10 ms; :data:`_READY`). Needs a writable cgroup file system (root, or a
  delegated cgroup v2); on v2 a cgroup holding processes cannot give controllers to children, so when this process
  is alone in its cgroup it moves itself into a child ``agentenv-host`` first. Off with
  ``AGENTENV_SANDBOX_CGROUPS=0``.
- per sandbox, through a tmpfs of ``disk_mb`` mounted (as root) on the sandbox's folder before the workdir is
  copied in: the workdir and ``/tmp`` share that quota (a write beyond it fails with ``ENOSPC``); at most 256
  files and folders per MB. Its pages are memory: those written by the sandbox's commands count toward
  ``memory_mb``, the copy of the source toward this process's own memory. Off with ``AGENTENV_SANDBOX_DISK_QUOTA=0``.
- per process, through rlimits set by ``prlimit`` right before the command: the address space (``memory_mb``, so
  that one huge allocation fails with ``MemoryError`` at once), CPU seconds, file size, processes of the
  sandbox's uid (bubblewrap), no core files; plus the wall-clock timeout. Output beyond ``output_bytes`` per stream
  is dropped (head and tail kept) while it is read, so a command cannot exhaust the host's memory by printing.

Commands whose arguments add up to more than :data:`INLINE_COMMAND_MAX` bytes reach the sandbox as a script file in
its ``/tmp`` (removed after the command), never through argv, whose size the kernel caps. ``read_file`` and
``read_bytes`` read at most ``max_bytes`` (:data:`READ_LIMIT` by default) and never block on a FIFO.

Crash safety: a process killed with SIGKILL cannot remove its sandboxes, so each sandbox folder (and pool folder,
and cgroup) carries its owner's mark in its name: boot id, PID namespace, pid and start time (:func:`_owner_mark`).
:func:`reclaim_leftovers` removes those whose owner is gone (unmounting a tmpfs quota first); :func:`open_sandbox`
runs it on its base folder at most every :data:`RECLAIM_EVERY` seconds, ``agentenv clean`` on demand.

Without cgroups (not root, a read-only cgroup file system, no controllers) memory and processes fall back to those
per-process rlimits (the sum of the processes' memory is then not bounded); without the tmpfs (not root) disk space
is bounded per file only (``file_size_mb``). Either fallback warns once per process. With a disk quota a
:class:`WorkdirPool` saves nothing (its source is copied into the tmpfs, as a prepared copy would have to be).

The package's modules, from the bottom up: :mod:`~agentenv.sandbox.errors` (what a sandbox refuses),
:mod:`~agentenv.sandbox.limits` (:class:`Limits`, rlimits, which limits hold), :mod:`~agentenv.sandbox.owners`
(owner marks), :mod:`~agentenv.sandbox.process` (one command as a host process: output capture, timeout,
:class:`ExecResult`), :mod:`~agentenv.sandbox.cgroups` (per-sandbox memory and processes),
:mod:`~agentenv.sandbox.workdirs` (the sandbox's folder: disk quota, copies, pools, leftovers),
:mod:`~agentenv.sandbox.base` (the :class:`Sandbox` contract), :mod:`~agentenv.sandbox.host` (what bubblewrap and local
share), the backends :mod:`~agentenv.sandbox.bubblewrap`, :mod:`~agentenv.sandbox.local`,
:mod:`~agentenv.sandbox.docker`, and :mod:`~agentenv.sandbox.backends` (:func:`open_sandbox`). Import from
``agentenv.sandbox``: the names below are its public API.
"""

from agentenv.sandbox.backends import BACKENDS, available_backends, limit_support, open_sandbox
from agentenv.sandbox.base import READ_LIMIT, Sandbox
from agentenv.sandbox.bubblewrap import SANDBOX_UID_BASE, SANDBOX_UID_SLOTS, SYSTEM_FOLDERS, BubblewrapSandbox
from agentenv.sandbox.docker import DEFAULT_IMAGE, DOCKER_LABEL, DockerSandbox, remove_stale_containers
from agentenv.sandbox.errors import FileTooLargeError, SandboxError
from agentenv.sandbox.limits import CGROUPS_SWITCH, DISK_QUOTA_SWITCH, Limits
from agentenv.sandbox.local import LocalSandbox
from agentenv.sandbox.owners import Leftover
from agentenv.sandbox.owners import _owner_mark as _owner_mark  # tests check the owner mark of what they make
from agentenv.sandbox.process import INLINE_COMMAND_MAX, ExecResult
from agentenv.sandbox.workdirs import RECLAIM_EVERY, WorkdirPool, reclaim_leftovers

__all__ = [
    "BACKENDS",
    "CGROUPS_SWITCH",
    "DEFAULT_IMAGE",
    "DISK_QUOTA_SWITCH",
    "DOCKER_LABEL",
    "INLINE_COMMAND_MAX",
    "READ_LIMIT",
    "RECLAIM_EVERY",
    "SANDBOX_UID_BASE",
    "SANDBOX_UID_SLOTS",
    "SYSTEM_FOLDERS",
    "BubblewrapSandbox",
    "DockerSandbox",
    "ExecResult",
    "FileTooLargeError",
    "Leftover",
    "Limits",
    "LocalSandbox",
    "Sandbox",
    "SandboxError",
    "WorkdirPool",
    "available_backends",
    "limit_support",
    "open_sandbox",
    "reclaim_leftovers",
    "remove_stale_containers",
]
