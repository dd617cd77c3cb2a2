"""Which process acts as the node, and how it stops (docs/lifecycle.md).

The policy the extension applies when it loads an app: a ``flask`` command other
than ``run``, and the reloader parent of ``flask run --debug``, never start the
node; and where nobody else handles SIGTERM, SIGTERM becomes a normal exit, so
that ``atexit`` announces the shutdown (``docker stop``, Kubernetes).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import click

log = logging.getLogger(__name__)


def loaded_by_flask_command() -> str | None:
    """Why the ``flask`` CLI loaded the app without serving it here, or None.

    Such a process (``flask shazbot members``, ``flask routes``, ``flask shell``, and the
    reloader parent of ``flask run --debug``, whose child serves) is not the node:
    starting its engine would speak for the node and, at exit, announce it offline.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return None
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    if ctx.command.name != "run":
        return (
            f"the flask CLI loaded this app for the {ctx.command.name!r} command, not to serve it"
        )
    if os.environ.get("WERKZEUG_RUN_MAIN") != "true" and _reloads(ctx):
        return "this is the reloader's parent process; its child serves the app and runs the node"
    return None


def _reloads(ctx: click.Context) -> bool:
    from flask.helpers import get_debug_flag

    reload = ctx.params.get("reload")
    return bool(get_debug_flag() if reload is None else reload)


def exit_on_sigterm() -> bool:
    """Make SIGTERM a normal exit (``SystemExit(143)``) where nobody else handles it.

    Only from the main thread and only over the default action: an application's own
    handler is never replaced (it should call ``shutdown()`` or exit normally), and
    gunicorn installs its own. True when the handler is (or already was) ours.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _exit:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit)
    return True


def _exit(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM stops at once
    log.info("SIGTERM: exiting, the shutdown is announced at exit")
    raise SystemExit(128 + signum)
