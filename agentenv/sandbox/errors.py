"""What a sandbox refuses: :class:`SandboxError` (an agent's bad path or command: an invalid turn, not a crash) and
its :class:`FileTooLargeError`."""

from __future__ import annotations


class SandboxError(ValueError):
    """An operation the sandbox refuses: a path that leaves the root, a NUL byte in a command.

    An agent's tool call that causes it is an invalid turn, not a crash.
    """


class FileTooLargeError(SandboxError):
    """A file read refused because it holds more bytes than the reader's ``max_bytes``."""
