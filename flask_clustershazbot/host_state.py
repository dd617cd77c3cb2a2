"""A host's state file and its runs: where the file lives by default, how it is created
(private to this user), and which run of a host is which (a pid and its start time,
since pids get reused)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile

from .errors import ConfigError


def state_directory() -> str:
    """Where the default state file lives: a runtime directory that tmp cleaners leave
    alone when the platform offers one (systemd's ``$RUNTIME_DIRECTORY``, then
    ``$XDG_RUNTIME_DIR``), else the temporary directory (``$TMPDIR``, else ``/tmp``)."""
    for name in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        directory = os.environ.get(name, "").split(":")[0]
        if directory and os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK):
            return directory
    return tempfile.gettempdir()


def default_state_path(base_url: str) -> str:
    """One file per host and base URL in :func:`state_directory`."""
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return os.path.join(state_directory(), f"clustershazbot-{digest}.sqlite3")


def run_id(pid: int) -> str:
    """A process's pid and start time: one run of a host (pids get reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            started = f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        started = "?"
    return f"{pid}:{started}"


def parent_of(host_id: str | None) -> int | None:
    """The parent pid of the live run named ``host_id``; None if unknown or over."""
    pid, _, _ = (host_id or "").partition(":")
    if not pid.isdigit() or not run_alive(host_id):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def pid_of(host_id: str) -> int:
    return int(host_id.partition(":")[0])


def run_alive(host_id: str | None) -> bool:
    """Whether the run named ``host_id`` (a :func:`run_id`) still goes on."""
    pid, _, started = (host_id or "").partition(":")
    if not pid.isdigit() or not started:
        return False
    if started != "?":
        return run_id(int(pid)) == host_id
    try:  # no /proc: the pid alone says it
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def create_private_file(path: str) -> None:
    """Create ``path`` with mode 0600 unless it exists; refuse a file that is not ours.

    The default location is a shared temporary directory: a symlink or a file
    planted there by another user must not become this host's state.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"SHAZBOT_STATE_PATH {path!r} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(f"SHAZBOT_STATE_PATH {path!r} is not a regular file owned by this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o600)
