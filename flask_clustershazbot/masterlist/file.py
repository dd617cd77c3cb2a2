"""A master list in a local file (a path or a ``file://`` URL), written under a lock."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time

from ..config import Settings
from ..records import ServerList
from .base import Location, file_path, log


class FileMasterList(Location):
    """A JSON file, updated read-merge-write under ``flock`` on a sibling ``.lock`` file."""

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        self.path = file_path(location)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._told_alone = False

    def _check_directory(self) -> None:
        # A typo'd path must not become a new directory tree and an island node.
        if not self.path.parent.is_dir():
            raise self.error(f"directory {self.path.parent} does not exist")

    def _load(self, repair: bool = False) -> ServerList | None:
        try:
            body = self.path.read_bytes()
        except FileNotFoundError:
            self._check_directory()
            return None
        except OSError as exc:
            raise self.error(str(exc.strerror)) from None
        return self.parse(body, repair)

    def read(self) -> ServerList:
        stored = self._load()
        if stored is None:
            if not self._told_alone:
                self._told_alone = True
                log.info(
                    "%s %s does not exist yet: this node starts alone and will create "
                    "it when it announces itself",
                    self.setting,
                    self.shown,
                )
            return ServerList()
        return stored

    def publish(self, view: ServerList) -> None:
        self._check_directory()
        try:
            with open(self.lock_path, "a") as lock:
                self._lock(lock.fileno())
                body = self.merged(self._load(repair=True) or ServerList(), view)
                self._replace(body)  # the lock is released when the file closes
        except OSError as exc:
            raise self.error(str(exc.strerror)) from None

    def _lock(self, fd: int) -> None:
        deadline = time.monotonic() + self.settings.master_list_timeout
        while True:  # polled, so that a stuck holder costs one timeout, not a hung thread
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self.error(f"{self.lock_path} stayed locked by another writer") from None
                time.sleep(0.005)

    def _replace(self, body: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        except BaseException:
            os.unlink(tmp)
            raise
