"""The member table behind the store, as the engine uses it: every merge goes through
here, and what it changed becomes log lines, counters and the app's signals."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..incoming import Incoming
from ..membership import Changes, Membership
from ..records import ServerList, canonical_base_url
from .common import log

if TYPE_CHECKING:
    from .node import Engine

T = TypeVar("T")

#: Bytes of a whole-table message besides its records; the rest of SHAZBOT_MAX_BODY_BYTES
#: is the member table's byte budget, so that every reply fits what peers accept.
REPLY_ENVELOPE = 128
#: Seconds between two log lines about the member cap (it is counted every time).
CAP_LOG_INTERVAL = 60.0
#: Seconds between two log lines about the invalid records of one sender (each is counted).
SKIP_LOG_INTERVAL = 60.0
#: Senders whose last such log line is remembered; the oldest is forgotten beyond this.
MAX_SKIP_SENDERS = 1024


def reports_itself(servers: ServerList, url: str, horizon: int) -> bool | None:
    """Whether a reply from the hint ``url`` reports ``url`` online: True with a record this
    node accepts, False with none (it answered as another member), None when its only such
    record is stamped beyond the clock guard (its clock is ahead: no answer either way).
    Read from the whole reply, before the records that could not change the table are left
    out: the hint's own stamp (the master list's) may be newer than the peer's heartbeat."""
    beyond = False
    for record in servers.online:
        if record.base_url != url:
            try:
                if canonical_base_url(record.base_url) != url:
                    continue
            except ValueError:
                continue
        if record.last_update <= horizon:
            return True
        beyond = True
    return None if beyond else False


class Table:
    """Merges into the engine's store, and their consequences."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._warned_future: set[str] = set()
        #: Monotonic time of the last log line about each sender's invalid records.
        self._skips_logged: dict[str, float] = {}
        self._cap_logged: float | None = None

    def transact(self, fn: Callable[[Membership], T]) -> T:
        return self.engine.store.transact(fn)

    def publish(self, changes: Changes) -> None:
        """Log and hand on transitions; runs with the store released."""
        e = self.engine
        for url in changes.future:
            if url not in self._warned_future:
                self._warned_future.add(url)
                log.warning(
                    "ignoring records of %s stamped too far in the future (clock skew?)", url
                )
        node = {"node": e.settings.base_url}
        for server in changes.joined:
            log.info("peer online: %s", server.base_url, extra=node)
        for server in changes.left:
            log.info("peer offline: %s", server.base_url, extra=node)
        for server in changes.purged:
            log.info("peer purged: %s", server.base_url)
        if changes.refuted:
            e.identity.note_refutation()
        if changes.refused or changes.evicted:
            self._count_member_cap(changes)
        if changes and e.listener is not None:
            try:
                e.listener(changes)
            except Exception:
                log.exception("a membership listener failed")

    def _count_member_cap(self, changes: Changes) -> None:
        """Count records refused or evicted by the member cap; log it at most once a minute."""
        e = self.engine
        e.stats.add(members_refused=changes.refused, members_evicted=changes.evicted)
        mono = e.monotonic()
        if self._cap_logged is None or mono - self._cap_logged >= CAP_LOG_INTERVAL:
            self._cap_logged = mono
            s = e.stats.snapshot()
            log.warning(
                "member table full (SHAZBOT_MAX_MEMBERS=%d, SHAZBOT_MAX_BODY_BYTES=%d): "
                "%d records refused and %d offline records evicted so far",
                e.settings.max_members,
                e.settings.max_body_bytes,
                s["members_refused"],
                s["members_evicted"],
            )

    def merge(
        self,
        servers: ServerList,
        heartbeat: bool = False,
        sender: str = "a peer",
        hints: bool = False,
        answered: str | None = None,
    ) -> dict[str, Any]:
        """Merge ``servers`` and return our whole state as a GossipMessage."""
        return self.merge_then(
            servers, heartbeat, Membership.gossip_message, sender, hints, answered
        )

    def state(self) -> dict[str, Any]:
        """Our whole state as a GossipMessage, after a heartbeat."""
        return self.merge(ServerList(), heartbeat=True)

    def merge_then(
        self,
        servers: ServerList | Incoming,
        heartbeat: bool,
        reply: Callable[[Membership], T],
        sender: str,
        hints: bool = False,
        answered: str | None = None,
    ) -> T:
        """Merge ``servers`` and return ``reply`` of the table (our whole state).

        ``sender`` names where they came from, for the log line about invalid records;
        ``hints``: from the master list (:meth:`Membership.merge`); ``answered``: the peer
        whose reply they are, which settles it if it is a hint (:meth:`Membership.settle_hint`).
        """
        e = self.engine
        if isinstance(servers, ServerList):
            servers = e.peer_policy.filter(servers)
        now, mono, s = e.clock(), e.monotonic(), e.settings
        skew = s.max_clock_skew_ms
        parsed: list[ServerList] = []

        def op(m: Membership) -> tuple[Changes, T]:
            if isinstance(servers, ServerList):
                fresh = servers
            else:  # validated against the table: only records that could change it
                fresh = e.peer_policy.filter(servers.news(m.entries))
            parsed.append(fresh)
            if heartbeat:
                m.heartbeat(now, mono, skew)
            changes = m.merge(
                fresh,
                now,
                mono,
                skew,
                s.retention_ms,
                s.max_members,
                s.max_body_bytes - REPLY_ENVELOPE,
                hints,
            )
            entry = m.entries.get(answered) if answered else None
            # A round's reply is a ServerList (an Incoming may hold records' bytes unread).
            if answered and entry is not None and entry.hint and isinstance(servers, ServerList):
                reported = reports_itself(servers, answered, now + skew)
                if reported is not None:
                    changes.extend(m.settle_hint(answered, reported, mono))
            return changes, reply(m)

        started = time.perf_counter()
        changes, state = self.transact(op)
        if servers.online or servers.offline:
            e.stats.add(merges=1, merge_seconds=time.perf_counter() - started)
        if parsed and parsed[-1].skipped:
            self._count_skipped(parsed[-1], sender)
        self.publish(changes)
        return state

    def _count_skipped(self, servers: ServerList, sender: str) -> None:
        """Count the invalid records left out of ``servers``; log it at most once a minute
        per sender, with the first one's field and problem."""
        e = self.engine
        e.stats.add(records_refused=servers.skipped)
        mono, logged = e.monotonic(), self._skips_logged
        last = logged.pop(sender, None)  # re-inserted last: the dict stays in age order
        if last is not None and mono - last < SKIP_LOG_INTERVAL:
            logged[sender] = last
            return
        if len(logged) >= MAX_SKIP_SENDERS:
            del logged[next(iter(logged))]
        logged[sender] = mono
        log.warning(
            "skipped %d invalid record(s) from %s, merged the rest (first: %s); "
            "further ones from it are counted for a minute without a log line",
            servers.skipped,
            sender,
            servers.problem,
        )
