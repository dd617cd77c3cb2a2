"""The process's own state, in one place: the engines it made, held weakly (an app that
is dropped takes its engine along), each shut down once at the interpreter's exit and
reset once in every child forked from this process. Hooks are registered once."""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import TYPE_CHECKING

from .hosting import after_fork_in_child

if TYPE_CHECKING:
    from .engine import Engine

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()
_hooked = False


def adopt(engine: Engine) -> None:
    """Run ``engine``'s shutdown at exit and its fork reset in children, from now on."""
    global _hooked
    with _lock:
        _engines.add(engine)
        if _hooked:
            return
        _hooked = True
    atexit.register(_at_exit)
    after_fork_in_child(_in_child)


def engines() -> list[Engine]:
    """The engines this process made that are still alive (metrics export them)."""
    with _lock:
        return list(_engines)


def _at_exit() -> None:
    for engine in engines():
        engine.shutdown()  # never raises


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    for engine in engines():
        engine.reset_after_fork()
