"""What the engine's parts share: the wall clock, the logger and how a failure is told."""

from __future__ import annotations

import logging
import time

from ..errors import ShazbotError
from ..settings_values import mask

#: One logger for the whole engine, under the name operators configure.
log = logging.getLogger("flask_clustershazbot.engine")


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def why(exc: BaseException) -> str:
    """An error for a log line: our own errors say what failed; others also need their type."""
    return str(exc) if isinstance(exc, ShazbotError) else mask(f"{type(exc).__name__}: {exc}")


def failed(what: str, exc: BaseException) -> str:
    """``<what> failed: <why>``, naming ``what`` once: the transport's errors begin with it."""
    return f"{what} failed: {why(exc).removeprefix(what + ': ')}"
