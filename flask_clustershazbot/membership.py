"""The member table and its merge rule (the newer record wins; see docs/protocol-notes.md).

Pure and deterministic: wall-clock time (``now``, ms) and monotonic time
(``mono``, s) are passed in. Every mutation reports what changed in a
:class:`Changes`, so that signals are derived from the table, never guessed.

Each record is ranked by ``(lastUpdate, offline, monitor)``; a record replaces
the known one iff it ranks higher. Taking the maximum of a total order is
idempotent, commutative and associative, so every delivery order converges,
and a stale online record can never revive a member known offline later.

The table is capped (``max_members`` records, ``max_bytes`` of wire JSON) so that a
whole-table reply always fits in what peers accept; :meth:`Membership._admit` says
which records give way (docs/faults.md, "Member cap").
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .entries import Entries, Entry, raw_record
from .records import GossipServer, ServerList, rank


@dataclass(slots=True)
class Changes:
    """Transitions of peers (never this node) caused by one operation."""

    joined: list[GossipServer] = field(default_factory=list)
    left: list[GossipServer] = field(default_factory=list)
    purged: list[GossipServer] = field(default_factory=list)
    #: Peers whose records were ignored for lying too far in the future.
    future: list[str] = field(default_factory=list)
    #: Records about this node that it had to outbid (see :meth:`Membership._refute`).
    refuted: int = 0
    #: Records of unknown members refused, and offline records evicted (also in
    #: ``purged``), because the table was full.
    refused: int = 0
    evicted: int = 0

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.purged)

    def extend(self, other: Changes) -> Changes:
        self.joined += other.joined
        self.left += other.left
        self.purged += other.purged
        self.future += other.future
        self.refuted += other.refuted
        self.refused += other.refused
        self.evicted += other.evicted
        return self


#: Wire bytes of a record besides its base URL: the keys, ``false``, 16 digits, ``{}`` and a comma.
RECORD_OVERHEAD = 64


def record_bytes(base_url: str) -> int:
    """An upper bound of the bytes a record of ``base_url`` takes in a message."""
    # '"' and '\\' are escaped (2 bytes each); a lone surrogate takes 6 (backslash-u-XXXX).
    text = base_url.encode("utf-8", "backslashreplace")
    return len(text) + base_url.count('"') + base_url.count("\\") + RECORD_OVERHEAD


class Membership:
    """One node's view of the cluster, its own record included."""

    def __init__(self, base_url: str, monitor: bool, now: int, mono: float) -> None:
        self.base_url = base_url
        self.monitor = monitor
        self.entries = Entries({base_url: Entry(GossipServer(base_url, monitor, now), False, mono)})
        #: Between start and shutdown.
        self.running = False
        #: False after a control request took this node offline (sticky).
        self.control_online = True
        #: Bumped on every change; lets stores and reply caches skip work.
        self.version = 0
        #: The changes of our own record among them: version - own_changes moves with peers only.
        self.own_changes = 0
        #: (key, the reply's peer records joined around ours): see gossip_body.
        self._body_cache: tuple[tuple[int, int, bool], bytes, bytes, bytes] | None = None
        #: Base URLs changed (or deleted) since a persistent store last saved.
        self.dirty: set[str] = set()
        #: Whether this process last stamped the own record from its wall clock (a
        #: heartbeat at ``now``), not past a peer's record (a refutation).
        self.stamped_by_clock = False

    # -- reading -----------------------------------------------------------

    @property
    def self_entry(self) -> Entry:
        return self.entries[self.base_url]

    def server_list(self, include_offline: bool = True) -> ServerList:
        """The view: online members and (optionally) offline ones; never hints."""
        online = [e.server for e in self.entries.values() if e.member]
        offline = (
            [e.server for e in self.entries.values() if not e.online] if include_offline else []
        )
        return ServerList(tuple(online), tuple(offline))

    def gossip_message(self) -> dict[str, Any]:
        """The whole table as a GossipMessage (``server_list().gossip_message()``, faster)."""
        online: list[dict[str, Any]] = []
        offline: list[dict[str, Any]] = []
        for e in self.entries.values():
            if e.hint:
                continue
            wire = e.wire
            if wire is None:
                wire = e.wire = e.server.to_dict()
            (online if e.online else offline).append(wire)
        return {"online": online, "offline": offline, "message": "gossip"}

    def gossip_body(self) -> bytes:
        """``encode_json(self.gossip_message())``, from cached bytes: the peers' records are
        joined once per change of a peer, and only our own record (every heartbeat) is new."""
        me = self.self_entry
        key = (self.version - self.own_changes, len(self.entries), me.online)
        cached = self._body_cache
        if cached is None or cached[0] != key:
            # Ours splits its list in two, so that the order stays the table's (as gossip_message).
            index = self.entries.index()
            place, parts = index.places[self.base_url], index.parts
            ours, others = (parts[1], parts[0]) if me.online else (parts[0], parts[1])
            cached = self._body_cache = (
                key,
                b",".join(filter(None, ours[:place])),
                b",".join(filter(None, ours[place + 1 :])),
                b",".join(filter(None, others)),
            )
        _, before, after, other = cached
        mine = b",".join([x for x in (before, raw_record(me), after) if x])
        online, offline = (mine, other) if me.online else (other, mine)
        return b'{"online":[%b],"offline":[%b],"message":"gossip"}' % (online, offline)

    def peers(self, online: bool = True, hints: bool = False) -> list[GossipServer]:
        """Peers (never this node) in the given state; online hints only with ``hints``."""
        me = self.base_url
        return [
            e.server
            for u, e in self.entries.items()
            if e.online is online and u != me and (hints or not e.hint)
        ]

    def online_urls(self) -> list[str]:
        """The base URLs of the online members, this node included (never hints)."""
        return [u for u, e in self.entries.items() if e.member]

    # -- writing -----------------------------------------------------------

    def _put(
        self,
        server: GossipServer,
        online: bool,
        mono: float,
        changes: Changes | None,
        hint: bool = False,
    ) -> None:
        url = server.base_url
        old = self.entries.get(url)
        self.entries[url] = Entry(server, online, mono, hint=hint and online)
        self.version += 1
        self.own_changes += url == self.base_url
        self.dirty.add(url)
        # Signals follow what the app sees: a hint never joined, so it never leaves either.
        was, now = old is not None and old.member, online and not hint
        if changes is not None and was != now:
            (changes.joined if now else changes.left).append(server)

    def heartbeat(self, now: int, mono: float, max_skew_ms: int | None = None) -> None:
        """Bring this node's own record up to date: its state and, while online, its time.

        ``max_skew_ms``: the clock guard. An own stamp further ahead of ``now`` than
        that was made while this node's clock ran ahead, and is restarted at ``now``.
        """
        entry = self.self_entry
        online = self.running and self.control_online
        last = entry.server.last_update
        # Peers ignore a record further than the skew ahead of their own clocks, so no
        # peer whose clock is right holds a stamp beyond now + skew: restarting at now
        # outbids nothing they hold. A stamp they do hold (at most now + skew) comes
        # back in the next reply and is refuted (_refute), so the heartbeat climbs
        # over it at once; no record of ours is revived or lost. Only a stamp our own
        # clock made: one that outbid a peer whose clock is ahead (up to the skew) is
        # legitimately ahead of ours, and restarting below it would flip-flop.
        ahead = max_skew_ms is not None and self.stamped_by_clock and last > now + max_skew_ms
        if ahead:
            stamp = now
        elif online != entry.online or (online and mono > entry.seen):
            # Strictly increasing even when the wall clock is behind our own last stamp
            # (stepped back, or a skewed peer's record refuted): a frozen heartbeat
            # would get this live node timed out by its peers. Once per monotonic tick.
            stamp = max(now, last + 1)
        else:
            return
        self.stamped_by_clock = stamp == now
        self._put(GossipServer(self.base_url, self.monitor, stamp), online, mono, None)

    def _refute(self, last_update: int, online: bool, now: int, mono: float) -> bool:
        """A record about this node never overwrites it; a newer or contrary one is outbid.
        True when it was."""
        entry = self.self_entry
        last = entry.server.last_update
        if last_update > last or (last_update == last and online != entry.online):
            stamp = max(now, last_update + 1)
            self.stamped_by_clock = stamp == now
            self._put(GossipServer(self.base_url, self.monitor, stamp), entry.online, mono, None)
            return True
        return False

    def merge(
        self,
        servers: ServerList,
        now: int,
        mono: float,
        max_skew_ms: int,
        retention_ms: int,
        max_members: int | None = None,
        max_bytes: int | None = None,
        hints: bool = False,
    ) -> Changes:
        """Merge incoming records; return the transitions they caused.

        Records further in the future than ``max_skew_ms`` (clock guard) or
        older than ``retention_ms`` (already purged, or about to be) are ignored.
        Records of members not yet known enter only while the table stays within
        ``max_members`` records and ``max_bytes`` (see :meth:`_admit`).

        ``hints``: the records come from the master list, which lists members that
        stopped long ago as well as live ones. An online record of a member not known
        here enters as a hint: rounds try it, but it is not in the view and no signal
        fires until a peer's record newer than it (its own heartbeat, directly or by
        gossip) or :meth:`settle_hint` confirms it. One of a member known offline here
        is left out: the member stays offline in the view until its own heartbeat says
        otherwise (a hint in its place would take it out of the view, neither online
        nor offline, and an answer under another name would delete it).
        """
        changes = Changes()
        horizon = now + max_skew_ms
        oldest = now - retention_ms
        entries = self.entries
        me = self.base_url
        # The best incoming record per member first, so that a message naming a member
        # twice causes at most one transition (a net change, not joined-then-left).
        best: dict[str, tuple[GossipServer, bool]] = {}
        for online, records in ((True, servers.online), (False, servers.offline)):
            for server in records:
                stamp = server.last_update
                if stamp > horizon:
                    changes.future.append(server.base_url)
                    continue
                if stamp < oldest:
                    continue
                url = server.base_url
                if url == me:
                    changes.refuted += self._refute(stamp, online, now, mono)
                    continue
                old = entries.get(url)
                if old is not None:
                    # Most records repeat what is known: skip those that cannot outrank it.
                    known = old.server.last_update
                    if stamp < known or (
                        stamp == known
                        and online is old.online
                        and server.monitor is old.server.monitor
                    ):
                        continue
                prev = best.get(url)
                if prev is None or rank(server, online) > rank(*prev):
                    best[url] = (server, online)
        newcomers: list[tuple[GossipServer, bool]] = []
        for url, (server, online) in best.items():
            old = entries.get(url)
            if old is None:
                newcomers.append((server, online))
            elif hints and online and not old.online:
                continue
            elif rank(server, online) > rank(old.server, old.online):
                self._put(server, online, mono, changes, hints and not old.member)
        if newcomers:
            self._admit(newcomers, mono, changes, max_members, max_bytes, hints)
        return changes

    def settle_hint(self, base_url: str, reported: bool, mono: float) -> Changes:
        """A direct exchange with the hint ``base_url`` succeeded: confirmed if the peer
        reported itself online under that base URL, dropped if it answered as another
        member (a second address of one node: it is not a member under this one)."""
        changes = Changes()
        entry = self.entries.get(base_url)
        if entry is None or not entry.hint:
            return changes
        if reported:
            self._put(entry.server, True, mono, changes)
        else:
            del self.entries[base_url]
            self.version += 1
            self.dirty.add(base_url)
        return changes

    def _admit(
        self,
        newcomers: list[tuple[GossipServer, bool]],
        mono: float,
        changes: Changes,
        max_members: int | None,
        max_bytes: int | None,
        hints: bool = False,
    ) -> None:
        """Add records of unknown members, newest first, within the cap.

        A full table makes room only by evicting offline peers, oldest first, and
        only for a record newer than the one evicted; otherwise the newcomer is
        refused. This node and online peers (monitors included) are never evicted.
        Newer-than-the-victim keeps a stale online record from reviving an evicted
        member while the table is full.
        """
        entries = self.entries
        count = len(entries)
        members = max_members if max_members is not None else sys.maxsize
        size = sum(map(record_bytes, entries)) if max_bytes is not None else 0
        budget = max_bytes if max_bytes is not None else sys.maxsize
        victims: list[tuple[int, str]] | None = None  # newest first: pop() takes the oldest
        newcomers.sort(key=lambda item: rank(*item), reverse=True)
        for server, online in newcomers:
            cost = record_bytes(server.base_url)
            while count + 1 > members or size + cost > budget:
                if victims is None:
                    victims = sorted(
                        (
                            (e.server.last_update, u)
                            for u, e in entries.items()
                            if not e.online and u != self.base_url
                        ),
                        reverse=True,
                    )
                if not victims or victims[-1][0] >= server.last_update:
                    break
                _, url = victims.pop()
                changes.purged.append(entries.pop(url).server)
                changes.evicted += 1
                self.version += 1
                self.dirty.add(url)
                count, size = count - 1, size - record_bytes(url)
            else:
                self._put(server, online, mono, changes, hints)
                count, size = count + 1, size + cost
                continue
            changes.refused += 1

    def mark_offline(self, base_url: str, at: int, mono: float) -> Changes:
        """Move an online peer offline, stamped ``at`` (the evidence time: when it was last
        known alive) or just after its last known record, whichever is later."""
        changes = Changes()
        entry = self.entries.get(base_url)
        if base_url != self.base_url and entry is not None and entry.online:
            stamp = max(at, entry.server.last_update + 1)
            self._put(GossipServer(base_url, entry.server.monitor, stamp), False, mono, changes)
        return changes

    def expire(self, now: int, mono: float, timeout: float) -> Changes:
        """Move offline every online peer whose record has not advanced for ``timeout`` s.

        Each is stamped when its record last advanced here (on the wall clock): any
        heartbeat it issued since, known elsewhere, wins over the verdict there.
        """
        stale = [
            (url, now - int((mono - e.seen) * 1000))
            for url, e in self.entries.items()
            if e.online and url != self.base_url and mono - e.seen > timeout
        ]
        changes = Changes()
        for url, seen in stale:
            changes.extend(self.mark_offline(url, seen, mono))
        return changes

    def forgive(self, mono: float) -> None:
        """Restart every online peer's staleness clock (after this node itself was paused)."""
        for url, e in self.entries.items():
            if e.online and url != self.base_url:
                e.seen = mono
                self.dirty.add(url)  # a shared store must save the new clocks too

    def cleanup(self, now: int, retention_ms: int) -> Changes:
        """Drop offline peers whose records are older than ``retention_ms``."""
        oldest = now - retention_ms
        changes = Changes()
        for url in [
            u
            for u, e in self.entries.items()
            if not e.online and u != self.base_url and e.server.last_update < oldest
        ]:
            changes.purged.append(self.entries.pop(url).server)
            self.version += 1
            self.dirty.add(url)
        return changes

    def absorb(self, entries: Iterable[Entry]) -> None:
        """Keep each of ``entries`` that outranks the known record (a table recovered
        from a lost state file), this node's own record included: it is the same host's."""
        for entry in entries:
            url = entry.server.base_url
            old = self.entries.get(url)
            if old is None or rank(entry.server, entry.online) > rank(old.server, old.online):
                self.entries[url] = entry
                self.version += 1
                self.dirty.add(url)

    def load(self, entries: Iterable[Entry]) -> None:
        """Replace the table with saved entries (used by persistent stores)."""
        self.entries = Entries((e.server.base_url, e) for e in entries)
        self.version += 1
