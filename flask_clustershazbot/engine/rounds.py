"""Gossip rounds: their pace, the choice of a peer, one exchange, and what a round tidies."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..membership import Changes, Membership
from ..records import ServerList
from .common import failed, log
from .suspicion import Failure

if TYPE_CHECKING:
    from .node import Engine

#: Chance that a round picks among monitors only (they act as hubs).
MONITOR_PREFERENCE = 0.5
#: Chance that a round also probes one offline peer, so that a healed partition rejoins.
OFFLINE_PROBE = 0.1
#: Rounds allowed to wait on slow peers at once; more are skipped, not queued.
MAX_ROUNDS_IN_FLIGHT = 3


class Rounds:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._in_flight = 0
        self._lock = threading.Lock()
        #: The staleness timeout of the last round: failures within it count against health.
        self.failure_timeout = engine.settings.failure_timeout_for(1)
        #: Monotonic time the next round is due (a round that runs late says this node is slow).
        self._due: float | None = None
        self._delay = engine.settings.gossip_interval
        self._last_mono: float | None = None
        #: The rest of this pass over the online peers, in random order, and every peer the
        #: pass has taken in (see _next_target).
        self._pass: list[str] = []
        self._in_pass: set[str] = set()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    def health(self, suspect: str | None = None) -> int:
        """This node's health (awareness.py) when it judges ``suspect``: 0 is healthy."""
        e = self.engine
        return e.awareness.health(e.monotonic(), self.failure_timeout, suspect)

    def restart(self) -> None:
        """The schedules begin (again): the time since the last round is no stall."""
        self._last_mono = None

    def schedule(self) -> None:
        # A node in trouble (its score: late rounds, helpers that did not answer, stalls)
        # gossips less often (Lifeguard's LHA-Probe): an overloaded process that kept its
        # pace would pile up requests that time out, and judgements of peers that are only
        # waiting on it, until the load itself made every exchange fail.
        e = self.engine
        self._delay = e.settings.gossip_interval * e.rng.uniform(0.9, 1.1) * (1 + e.awareness.score)
        self._due = e.monotonic() + self._delay
        e.scheduler.after(self._delay, self.run)

    def run(self) -> None:
        """The scheduled round: run one unless too many wait on slow peers."""
        e = self.engine
        if not e.live:
            return
        due = self._due
        if due is not None and e.monotonic() - due > e.settings.gossip_interval / 2:
            e.awareness.apply(1)  # this process could not run a job on time: it is slow
        self.schedule()  # first, so that a slow peer never delays the next round
        with self._lock:
            if self._in_flight >= MAX_ROUNDS_IN_FLIGHT:
                log.debug("skipping a round: %d rounds wait on slow peers", self._in_flight)
                return
            self._in_flight += 1
        try:
            e.gossip_round()  # the engine's: a test may wrap it
        except Exception:
            log.exception("gossip round failed")
        finally:
            with self._lock:
                self._in_flight -= 1

    def gossip_round(self) -> None:
        """One round: heartbeat, exchange with one peer, expire stale peers, clean up."""
        e = self.engine
        mono = e.monotonic()
        s = e.settings
        judged = e.suspicions.judged()

        def choose(m: Membership) -> tuple[str | None, str | None, float]:
            # A peer under judgement is being tried already: rounds go to the others, so
            # that gossip keeps flowing between the members that can reach each other.
            peers = [p for p in m.peers(True, hints=True) if p.base_url not in judged]
            target = None
            if peers:
                monitors = [p for p in peers if p.monitor]
                if monitors and e.rng.random() < MONITOR_PREFERENCE:
                    target = e.rng.choice(monitors).base_url
                else:
                    # The monitors have their share already: the pass goes over the
                    # others, so that each of them is met sooner (a crash found sooner).
                    others = {p.base_url for p in peers if not p.monitor}
                    target = self._next_target(others or {p.base_url for p in peers})
            probe = None
            if e.rng.random() < OFFLINE_PROBE:
                offline = m.peers(online=False)
                if offline:
                    probe = e.rng.choice(offline).base_url
            return target, probe, s.failure_timeout_for(len(m.entries))

        target, probe, timeout = e.table.transact(choose)
        self._check_pause(mono, timeout)
        if target is not None:
            failure = self.attempt(target)
            if failure is not None:
                e.suspicions.suspect(target, failure)
        if probe is not None:
            self.attempt(probe, quiet=True)
        now, mono = e.clock(), e.monotonic()
        self.failure_timeout = timeout
        retention, stale = s.retention_ms, timeout * (1 + self.health())

        def tidy(m: Membership) -> Changes:
            return m.expire(now, mono, stale).extend(m.cleanup(now, retention))

        e.table.publish(e.table.transact(tidy))
        e.last_round = now
        e.stats.add(rounds=1)
        e.identity.check_now_and_then(mono)

    def _next_target(self, online: set[str]) -> str:
        """The next peer of a pass over ``online`` (the round's candidates) in a fresh random
        order (SWIM's round-robin). Each pick is still a random peer, but every peer is met once per pass,
        so a failed one is found within a pass, not after an unbounded run of bad luck.
        A peer that joins mid-pass goes in at a random place of the rest of it (as SWIM
        does), not a whole pass later. Called inside a transaction (one round at a time)."""
        rng = self.engine.rng
        for url in sorted(online - self._in_pass):
            self._pass.insert(rng.randrange(len(self._pass) + 1), url)
            self._in_pass.add(url)
        while self._pass:
            url = self._pass.pop()
            if url in online:  # left since the pass began: skip it
                return url
        self._pass = sorted(online)
        rng.shuffle(self._pass)
        self._in_pass = set(online)
        return self._pass.pop()

    def _check_pause(self, mono: float, timeout: float) -> None:
        """If this node itself stalled (GC, SIGSTOP, overload), do not blame its peers for it."""
        e = self.engine
        last, self._last_mono = self._last_mono, mono
        if last is not None and mono - last > max(3 * self._delay, timeout / 2):
            log.warning("this node stalled for %.1f s; restarting peer timeouts", mono - last)
            e.awareness.apply(2)
            e.table.transact(lambda m: m.forgive(mono))
            e.suspicions.restart_silences()  # nor count its own stall as a peer's silence

    def attempt(
        self, base_url: str, quiet: bool = False, timeout: float | None = None
    ) -> Failure | None:
        """One exchange with the adaptive timeout (or ``timeout``): None on success."""
        e = self.engine
        timeout = timeout or e.round_trips.timeout(base_url)
        message = e.table.state()
        started, began = e.monotonic(), e.clock()
        try:
            reply = e.transport.gossip(base_url, message, timeout)
        except Exception as exc:  # any failure is the peer's failed exchange; the round carries on
            slow = e.monotonic() - started >= 0.9 * timeout  # (nearly) waited out its timeout
            if slow:
                e.round_trips.timed_out(base_url)
            e.awareness.failed(base_url, started)
            if not quiet:
                e.stats.add(gossip_failures=1)
                log.warning(
                    "%s",
                    failed(f"gossip with {base_url}", exc),
                    extra={"node": e.settings.base_url},
                )
            return Failure(bool(getattr(exc, "refused", False)), slow, timeout, started, began)
        e.round_trips.sample(base_url, e.monotonic() - started)
        if not self.merge_quietly(reply, base_url):
            return Failure(False, False, timeout, started, began)
        e.awareness.reached(base_url)
        return None

    def merge_quietly(self, reply: ServerList, base_url: str) -> bool:
        """Merge a peer's reply; a failure to merge is logged and counted, never raised."""
        e = self.engine
        try:
            e.table.merge(reply, sender=f"the reply of {base_url}", answered=base_url)
        except Exception:
            e.stats.add(gossip_failures=1)
            log.exception("merging the reply of %s failed", base_url)
            return False
        return True
