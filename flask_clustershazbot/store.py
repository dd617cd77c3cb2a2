"""Where a node's member table lives. Every read-modify-write goes through ``transact``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from .membership import Membership

T = TypeVar("T")


class Store(Protocol):
    #: Whether the table's version moves only with this process's transactions, so that a
    #: reader may reuse what it derived from the table until the version changes. False for
    #: a table shared with other processes (a reader then re-reads after a while).
    exact: bool

    def transact(self, fn: Callable[[Membership], T]) -> T:
        """Run ``fn`` on the table atomically and return its result. Never does network I/O."""
        ...

    def reset_after_fork(self) -> None:
        """Make the store usable in a child process (locks held at fork are lost there)."""
        ...


class MemoryStore(Store):
    """The table in this process, behind one lock. The default."""

    exact = True

    def __init__(self, membership: Membership) -> None:
        self._membership = membership
        self._lock = threading.Lock()

    def transact(self, fn: Callable[[Membership], T]) -> T:
        with self._lock:
            return fn(self._membership)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
