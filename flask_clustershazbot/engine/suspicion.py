"""Suspicion: the judgement of a peer whose exchange failed, from the first failure to a
verdict (offline) or its end (the peer answered, or proved alive). Each judgement is a
:class:`Suspicion`, one per peer at a time, run on jobs of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..entries import Entry
from ..membership import Membership
from .common import log

if TYPE_CHECKING:
    from .node import Engine

#: Two attempts that each waited out the request timeout end the retries early (the original's
#: rule): a peer that leaves requests hanging is unfit to serve, whatever the cause.
SLOW_FAILURES = 2
#: ... once the peer has been silent, since the first of them, for this share of the
#: request timeout: a pause shorter than that (a gunicorn worker being replaced, a GC) is
#: not a hang.
HANG_SILENCE = 0.9


@dataclass(frozen=True)
class Failure:
    """The evidence of one failed direct exchange."""

    #: The connection was refused: nothing listens (strong evidence of a crash).
    refused: bool
    #: The attempt waited out its timeout (a hung or paused peer, or a slow network).
    slow: bool
    #: The timeout the attempt had, in seconds (helpers get the same).
    timeout: float
    #: Monotonic time at which the attempt began (retries are spaced from there).
    started: float
    #: Wall-clock ms at which the attempt began: the evidence time of a verdict.
    began: int = 0


@dataclass
class Suspicion:
    """The judgement of one peer, from its first failed exchange to a verdict or its end."""

    base_url: str
    #: Wall-clock ms when the first failed attempt began. A verdict is stamped no later
    #: (it says "silent since then"), so any heartbeat the peer issued after it wins
    #: over the verdict wherever it is known, and it proves the peer alive (see
    #: :meth:`proves`).
    began: int
    #: The peer's record as known when the judgement began.
    known: int
    failed: int = 0
    slow: int = 0
    #: Monotonic time of the first attempt that waited out its timeout: the hang silence
    #: counts from there.
    since: float | None = None
    #: How long the next attempt, and the helpers, wait: twice the last attempt's timeout
    #: when it was waited out (the judgement's own backoff; the node's estimate also
    #: grows with the probes it runs for others, which would stretch a verdict).
    wait: float = 0.0
    #: Whether news of the peer (see :meth:`Suspicions.news`) had come when the helpers
    #: last answered: only such news can their "could not reach it" outweigh.
    news_when_asked: bool = False

    def proves(self, entry: Entry) -> bool:
        """Whether ``entry`` proves the peer alive since the judgement began: a record newer
        than the one known then, stamped after it began."""
        stamp = entry.server.last_update
        return stamp > self.known and stamp >= self.began


class Suspicions:
    """The judgements under way, and their steps."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._under_way: dict[str, Suspicion] = {}

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    def judged(self) -> set[str]:
        """The peers under judgement."""
        with self._lock:
            return set(self._under_way)

    def clear(self) -> None:
        """The schedules restart: the steps of a stopped scheduler never run."""
        with self._lock:
            self._under_way.clear()

    def restart_silences(self) -> None:
        """This node itself stalled: its stall is no judged peer's silence."""
        with self._lock:
            for suspicion in self._under_way.values():
                suspicion.since, suspicion.slow = None, 0

    def suspect(self, base_url: str, failure: Failure) -> None:
        """A round's exchange failed: judge the peer on a job of its own (rounds go on
        meanwhile, so gossip keeps flowing), unless a judgement of it is under way."""

        def known(m: Membership) -> int:
            entry = m.entries.get(base_url)
            return entry.server.last_update if entry is not None else 0

        stamp = self.engine.table.transact(known)
        with self._lock:
            if base_url in self._under_way:
                return
            suspicion = self._under_way[base_url] = Suspicion(base_url, failure.began, stamp)
        self._later(0, suspicion, lambda: self._judge(suspicion, failure))

    def _later(self, delay: float, s: Suspicion, step: Callable[[], None]) -> None:
        """Run a step of the judgement ``s`` on a job of its own. A step that fails ends the
        judgement: rounds pass over a peer under judgement, so a judgement left hanging
        would hide the peer from them for good."""

        def run() -> None:
            try:
                step()
            except Exception:
                log.exception("judging %s failed", s.base_url)
                self._end(s, None)

        self.engine.scheduler.after(delay, run)

    def _judge(self, s: Suspicion, failure: Failure) -> None:
        """After a failed direct attempt: ask helpers, then clear, retry or move the peer offline.

        Offline when helpers confirm a refused connection (strong evidence); after
        SLOW_FAILURES attempts that waited out their timeout, once the peer has been
        silent since the first of them for the hang silence (so a peer that pauses
        briefly, e.g. a gunicorn worker being replaced, is not misjudged); or after
        ``retries`` failed retries. The judgement ends without a verdict when a helper
        reached the peer or the peer proved alive meanwhile (:meth:`_moot`). The helpers
        wait as long as our next attempt would (the backed-off timeout).
        """
        e = self.engine
        s.wait = min(failure.timeout * (2 if failure.slow else 1), e.settings.request_timeout)
        reached = self.probe_indirectly(s.base_url, s.wait)
        s.news_when_asked = self.news(s)
        self._decide(s, failure, reached)

    def _decide(self, s: Suspicion, failure: Failure, reached: bool | None) -> None:
        """:meth:`_judge` once the helpers have answered (``reached``, as from
        :meth:`probe_indirectly`)."""
        e = self.engine
        s.failed += 1
        if failure.slow:
            s.slow += 1
            s.since = failure.started if s.since is None else s.since
        # News that the peer is alive outweighs our failed attempts unless the helpers tried
        # it and could not reach it either, with that news already in, while this node is
        # healthy: a peer that sends but cannot be reached is unfit to serve. News newer
        # than their answer (a partition healed meanwhile) counts; so does any news for a
        # node in poor health.
        health = e.rounds.health(s.base_url)
        trust_news = reached is not False or not s.news_when_asked or health > 0
        if reached or self._moot(s, trust_news):
            self._end(s, reached)
            return
        confirmed = reached is False and failure.refused
        # A node in the worst health whose helpers did not answer cannot tell a silent
        # peer from its own trouble: only helpers that tried the peer settle a hang then.
        since = s.since  # read once: a stall of this node may clear it (restart_silences)
        hung = (
            s.slow >= SLOW_FAILURES
            and since is not None
            and self._silence_left(since, s.base_url) <= 0
            and (reached is False or health < e.awareness.maximum)
        )
        # Attempts that waited out their timeout are judged by the hang rule alone: counting
        # them as retries would cut short the silence a node in poor health waits out.
        if not confirmed and not hung and s.failed - s.slow <= e.settings.retries:
            # Attempts begin ``retry_delay`` apart (longer for a node in trouble, as rounds
            # are): the time spent waiting on this one and on the helpers counts towards it.
            delay = e.settings.retry_delay * (1 + e.awareness.score) - (
                e.monotonic() - failure.started
            )
            self._later(max(delay, 0.0), s, lambda: self._retry(s))
            return
        self._end(s, False)
        if confirmed:
            why = "its connection was refused, and no helper reached it"
        elif hung:
            why = f"silent for {e.monotonic() - (since or 0.0):.1f} s over {s.slow} attempts"
        else:
            why = f"{s.failed} attempts failed"
        why += " (helpers: could not reach it" if reached is False else " (no helper answered"
        why += f"; health {health})"
        log.info("%s does not answer: %s", s.base_url, why, extra={"node": e.settings.base_url})
        # A silence is stamped when the judgement began, not now: the verdict says "silent
        # since then", so it never outbids a heartbeat the peer issued later, which a peer
        # that is alive after all has spread meanwhile (then the verdict changes nothing
        # there). A refused connection confirmed by helpers says "gone now": stamped now, so
        # that the last heartbeats of a peer that was stopping when the judgement began,
        # arriving late, do not bring it back for a moment (peer_left, peer_joined, peer_left).
        now, mono = e.clock(), e.monotonic()
        at = now if confirmed else min(s.began, now)
        changes = e.table.transact(lambda m: m.mark_offline(s.base_url, at, mono))
        e.table.publish(changes)
        if changes.left:
            self._spread()

    def _moot(self, s: Suspicion, trust_news: bool) -> bool:
        """Whether the judgement ``s`` has nothing left to decide: the peer is no longer
        online here (another member's verdict arrived, or its record is gone), or, with
        ``trust_news``, there is news of it (:meth:`news`)."""

        def check(m: Membership) -> bool:
            entry = m.entries.get(s.base_url)
            return entry is None or not entry.online or (trust_news and s.proves(entry))

        return self.engine.table.transact(check)

    def news(self, s: Suspicion) -> bool:
        """Whether the peer proved alive since the judgement ``s`` began: a record of it newer
        than the one known then, stamped after the judgement began (a heartbeat, by gossip
        or in its own request)."""

        def check(m: Membership) -> bool:
            entry = m.entries.get(s.base_url)
            return entry is not None and entry.online and s.proves(entry)

        return self.engine.table.transact(check)

    def _end(self, s: Suspicion, reached: bool | None) -> None:
        """The judgement ``s`` is over (``reached``: a helper reached the peer)."""
        if reached:
            log.info("%s did not answer this node, but another member reached it", s.base_url)
        with self._lock:
            if self._under_way.get(s.base_url) is s:
                del self._under_way[s.base_url]

    def _silence_left(self, since: float, suspect: str) -> float:
        """Seconds until ``suspect``, silent since ``since``, has been silent long enough to
        be judged hung (zero or less: it has). A node in poor health waits longer."""
        e = self.engine
        silence = HANG_SILENCE * e.settings.request_timeout * (1 + e.rounds.health(suspect))
        return since + silence - e.monotonic()

    def _spread(self) -> None:
        """Tell a few members at once that a peer went offline, instead of waiting for rounds."""
        e = self.engine
        k = e.settings.probe_helpers
        if not k:
            return  # the rule before indirect probes: rounds alone spread the news

        def pick(m: Membership) -> list[str]:
            peers = [p.base_url for p in m.peers(online=True)]
            return e.rng.sample(peers, min(k, len(peers)))

        e.discovery.greet(e.table.transact(pick), quiet=True)

    def _retry(self, s: Suspicion) -> None:
        e = self.engine
        url = s.base_url
        if not e.live or self._moot(s, trust_news=False):
            self._end(s, None)
            return
        timeout, reached = s.wait, None
        deciding = s.since is not None and s.slow + 1 >= SLOW_FAILURES
        if s.since is not None and deciding:
            # The attempt that can settle a hang: the helpers are asked first, then the
            # peer is waited on until the silence settles it, and no less than the backoff
            # (within the request timeout). The verdict then comes when the silence ends,
            # not a round of helpers after it, and the peer is watched up to that moment.
            reached = self.probe_indirectly(url, timeout)
            s.news_when_asked = self.news(s)
            since = s.since  # None if a stall of this node restarted the silence meanwhile
            if since is not None:
                left = self._silence_left(since, url)
                timeout = min(max(left, timeout), e.settings.request_timeout)
        failure = e.rounds.attempt(url, timeout=timeout) if e.live and not reached else None
        if failure is None:  # the peer answered (to us or a helper), or this node stopped
            self._end(s, reached)
            return
        if deciding:
            self._decide(s, failure, reached)
        else:
            self._judge(s, failure)

    def probe_indirectly(self, base_url: str, timeout: float) -> bool | None:
        """Ask up to ``probe_helpers`` other online members to try ``base_url`` (SWIM's ping-req).

        True if any reached it; False if none did and at least one answered that it
        could not; None if no helper answered (none known, a 404 from a node of the original, failures).
        """
        e = self.engine
        k = e.settings.probe_helpers

        def pick(m: Membership) -> list[str]:
            others = [p.base_url for p in m.peers(online=True) if p.base_url != base_url]
            return e.rng.sample(others, min(k, len(others)))

        helpers = e.table.transact(pick) if k else []
        if not helpers:
            return None
        # Each helper waits ``timeout`` for the peer; we wait that plus our own timeout for it.
        waits = [timeout + e.round_trips.timeout(h) for h in helpers]
        answers = e.transport.probe_many(helpers, base_url, timeout, waits)
        for helper, answer in zip(helpers, answers, strict=True):
            log.debug("probe of %s through %s: %s", base_url, helper, answer)
        if True in answers:
            return True
        if False in answers:
            return False
        e.awareness.apply(1)  # no helper answered us either: the trouble may be ours
        return None
