"""Identity: whether this process is the node its base URL names (the self-check), and
what happens when another process claims it (an identity conflict)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .common import log, why

if TYPE_CHECKING:
    from .node import Engine

#: A starting node checks every this many seconds that its base URL leads back to it ...
SELF_CHECK_EVERY = 0.25
#: ... and after this many seconds without an answer acts as the node anyway, with a warning
#: (nothing listens yet, or a network that cannot reach its own address).
SELF_CHECK_PATIENCE = 30.0
#: A refused connection within this many seconds of the start, before any check succeeded,
#: is the server not listening yet (it binds after loading the app): retried, not a failure.
SELF_CHECK_GRACE = 2.0
#: This many refutations within CONFLICT_WINDOW_ROUNDS gossip intervals (at least a minute)
#: hint that another process claims this node's base URL, or that peers cannot reach it;
#: a node acting as the node also checks every CONFLICT_WINDOW_ROUNDS intervals anyway.
CONFLICT_HINTS = 3
CONFLICT_WINDOW_ROUNDS = 10


class Identity:
    """The self-check's state and steps."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Why the last self-check failed, or None.
        self.error: str | None = None
        self._began = 0.0
        #: A self-check has found this process at the base URL since start().
        self._found = False
        #: Monotonic time of the last self-check while acting as the node.
        self._last = 0.0
        self._refutations: deque[float] = deque(maxlen=CONFLICT_HINTS)

    def restart(self, mono: float) -> None:
        """start() was called: the checks begin again."""
        self._began, self._found = mono, False

    def went_live(self, mono: float) -> None:
        self._last = mono

    def check_now_and_then(self, mono: float) -> None:
        """After a round: check now and then, whatever the clocks (two claimants with equal
        clocks rarely outbid each other, so refutations alone may never reveal a conflict)."""
        e = self.engine
        if (
            e.self_check
            and mono - self._last >= CONFLICT_WINDOW_ROUNDS * e.settings.gossip_interval
        ):
            self._last = mono
            self.check()

    def check(self) -> None:
        """Check that our base URL leads back to this process (or its gunicorn host).

        Answered with our instance token: this process is the node. Answered by another
        clustershazbot process: that one is the node, and this process stays passive (a
        script, a worker or a reloader parent that loaded the app). No answer: keep trying
        for SELF_CHECK_PATIENCE seconds, then act as the node anyway, with a warning.
        """
        e = self.engine
        if not e.started or e.passive:
            return
        url = e.settings.base_url
        refused = False
        try:
            answer = e.transport.identify(url)
        except Exception as exc:  # a TransportError, or anything from below: never fatal
            answer, problem = None, why(exc)
            refused = bool(getattr(exc, "refused", False))
        else:
            problem = "the answer is not from a clustershazbot node" if answer is None else ""
        if answer == e.instance:
            if self.error:
                log.info("SHAZBOT_BASE_URL %s now leads back to this node", url)
            self.error = None
            self._found = True
            e.go_live()
            return
        if answer is not None:
            e.become_passive(
                f"SHAZBOT_BASE_URL {url} is served by another process; this one stays passive "
                "(it loaded the app without serving it: a script, a worker, a reloader parent, "
                "or a second host with the same base URL)"
            )
            return
        waited = e.monotonic() - self._began
        if refused and not self._found and waited < SELF_CHECK_GRACE:
            e.scheduler.after(SELF_CHECK_EVERY, self.check)  # not listening yet
            return
        first = self.error is None
        self.error = f"SHAZBOT_BASE_URL {url} does not lead back to this node ({problem})"
        e.stats.add(self_check_failures=1)
        if e.live:
            if first:
                log.warning("%s; peers cannot reach it there", self.error)
        elif waited < SELF_CHECK_PATIENCE:
            if first:  # a wrong port or host: said at once, not after the patience
                log.warning(
                    "%s; checking until %g s after the start, then acting as the node anyway",
                    self.error,
                    SELF_CHECK_PATIENCE,
                )
            e.scheduler.after(SELF_CHECK_EVERY, self.check)
        else:
            log.warning("%s after %g s; acting as the node anyway", self.error, SELF_CHECK_PATIENCE)
            e.go_live()

    def note_refutation(self) -> None:
        """Refuting over and over means another process stamps our record, or peers keep
        finding our base URL unreachable: let the self-check say which."""
        e = self.engine
        mono = e.monotonic()
        e.awareness.apply(1)  # peers believe this node offline: it may be slow to answer
        hints = self._refutations
        hints.append(mono)
        window = max(60.0, CONFLICT_WINDOW_ROUNDS * e.settings.gossip_interval)
        if len(hints) == CONFLICT_HINTS and mono - hints[0] <= window:
            hints.clear()
            log.warning(
                "this node refuted records about itself %d times in %.0f s: another process "
                "may claim SHAZBOT_BASE_URL %s, or peers cannot reach it; checking",
                CONFLICT_HINTS,
                window,
                e.settings.base_url,
            )
            if e.self_check and e.live:
                e.scheduler.after(0, self.check)
