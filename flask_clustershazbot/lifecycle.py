"""Which process acts as the node, and how it stops (docs/lifecycle.md).

The policy the extension applies when it loads an app: a ``flask`` command other
than ``run``, and the reloader parent of ``flask run --debug``, never start the
node; and where nobody else handles SIGTERM (no server, no application handler, in
Python or in C), SIGTERM becomes a normal exit, so that ``atexit`` announces the
shutdown (``docker stop``, Kubernetes). A signal is never taken from a server.
"""

from __future__ import annotations

import ctypes
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
    if reloader_parent():
        return "this is the reloader's parent process; its child serves the app and runs the node"
    return None


def reloader_parent() -> bool:
    """Whether this process is the reloader's parent of ``flask run`` (its child serves)."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true" or os.environ.get("WERKZEUG_RUN_MAIN"):
        return False
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command.name == "run" and _reloads(ctx)


def _reloads(ctx: click.Context) -> bool:
    from flask.helpers import get_debug_flag

    reload = ctx.params.get("reload")
    return bool(get_debug_flag() if reload is None else reload)


def exit_on_sigterm() -> bool:
    """Make SIGTERM a normal exit (``SystemExit(143)``) where nobody else handles it.

    Only from the main thread and only over the default action: an application's own
    handler is never replaced (it should call ``shutdown()`` or exit normally), nor a
    server's (gunicorn's in Python, uWSGI's and Apache's in C), whose own exit path
    announces the shutdown. True when the handler is (or already was) ours.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is _exit:
        return True
    if handled(signal.SIGTERM):
        return False
    signal.signal(signal.SIGTERM, _exit)
    return True


def handled(signum: int) -> bool:
    """Whether anything but the default action handles ``signum`` in this process: a handler
    in Python (an application's, a server's), or one in C that Python cannot see
    (``signal.getsignal`` shows uWSGI's and Apache's as the default)."""
    if signal.getsignal(signum) is not signal.SIG_DFL:
        return True
    return _c_handler(signum) not in (None, 0)  # 0 is SIG_DFL


def _c_handler(signum: int) -> int | None:
    """The handler address the kernel has for ``signum`` (0: default); None if unknown.

    ``struct sigaction`` starts with the handler on Linux and macOS alike; the rest of
    the structure is left to a buffer larger than any platform's.
    """
    try:
        libc = ctypes.CDLL(None)  # this process's symbols, the C library's among them
        buffer = ctypes.create_string_buffer(512)
        if libc.sigaction(signum, None, buffer) != 0:
            return None
    except (OSError, AttributeError, TypeError):
        return None
    return ctypes.c_void_p.from_buffer(buffer).value or 0


def _exit(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM stops at once
    log.info("SIGTERM: exiting, the shutdown is announced at exit")
    raise SystemExit(128 + signum)


#: Seconds a reloader's parent waits for its child to finish its shutdown after Ctrl-C.
RELOADER_PATIENCE = 5.0


def patient_reloader_parent() -> bool:
    """In the reloader's parent of ``flask run --debug``: let the child finish its shutdown.

    Ctrl-C reaches both processes. On its own, the parent gives its child 0.25 s to exit
    (``subprocess``'s rule) and then kills it, which a loaded machine's announcement can
    outlast. Here the parent's first SIGINT only waits for the child, which exits by itself
    and lets the parent return; if it does not within RELOADER_PATIENCE seconds (the parent
    alone was signalled), the SIGINT is raised again as before. A second SIGINT acts at
    once. Only from the main thread and over Python's default handler. True if installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False

    def wait_for_child(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(RELOADER_PATIENCE, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGINT, wait_for_child)
    return True
