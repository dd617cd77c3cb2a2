"""The original's function API, for apps on other frameworks.

One engine per process, configured from ``SHAZBOT_*`` environment variables; under
gunicorn the workers of a host share it as one node, as with the extension.
Errors are raised as :class:`Unauthorized`, :class:`BadMessage` (or its
subclass ``TooLarge``) and :class:`NotStarted`, each with an HTTP ``status``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .config import load_settings
from .engine import Engine
from .errors import NotStarted
from .factory import make_engine

_engine: Engine | None = None
_lock = threading.Lock()


def _current() -> Engine:
    if _engine is None:
        raise NotStarted("clustershazbot is not started: call shazbot_start() first")
    return _engine


def shazbot_start() -> Engine:
    """Start the process's engine (idempotent). Raises ConfigError on a bad environment."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = make_engine(load_settings({}, os.environ))
        _engine.start()
        return _engine


def shazbot_shut_down() -> None:
    """Go offline and announce it. Idempotent; does nothing if never started."""
    if _engine is not None:
        _engine.shutdown()


def shazbot_gossip_request(authorization: str, body: Any) -> dict[str, Any]:
    """Handle a POST to /clustershazbot/gossip: merge the message, return our whole state."""
    return _current().handle_gossip(authorization, body)


def shazbot_list_request(authorization: str) -> dict[str, Any]:
    """Handle a GET of /clustershazbot/list: online members; offline too with the control secret."""
    return _current().handle_list(authorization)


def shazbot_control_request(authorization: str, body: Any) -> dict[str, Any]:
    """Handle a POST to /clustershazbot/control: take this node offline or online again."""
    return _current().handle_control(authorization, body)
