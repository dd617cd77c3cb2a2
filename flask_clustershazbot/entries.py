"""The member table's entries (:class:`Entry`, one per member), and :class:`Entries`, the
table itself: a dict that keeps, beside it, what the gossip endpoint needs (the records
an incoming one is skipped for, the reply's records in table order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import _json
from .records import GossipServer


@dataclass(slots=True)
class Entry:
    server: GossipServer
    online: bool
    #: This node's monotonic time (s) when the record last changed here.
    seen: float
    #: The record as wire JSON, made once: an entry is replaced, never changed, when its
    #: record changes, so every reply reuses the dicts of the records that did not.
    wire: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: The record as encoded JSON bytes, made once, for the same reason.
    raw: bytes | None = field(default=None, repr=False, compare=False)
    #: Learnt only from the master list (or DNS), not yet confirmed alive: tried by rounds,
    #: but never listed, forwarded or signalled (see :meth:`Membership.merge`).
    hint: bool = False

    @property
    def member(self) -> bool:
        """Online and confirmed: what the app sees as an online member."""
        return self.online and not self.hint


def raw_record(e: Entry) -> bytes:
    """The entry's record as JSON bytes, made once (see Entry.raw)."""
    raw = e.raw
    if raw is None:
        # Formatted rather than dumps(to_dict()): orjson's bytes keep a 4 KiB buffer
        # each, which would cost 4 MiB per 1,000 entries held.
        s = e.server
        raw = e.raw = b'{"baseUrl":%b,"monitor":%b,"lastUpdate":%d}' % (
            _json.dumps(s.base_url),
            b"true" if s.monitor else b"false",
            s.last_update,
        )
    return raw


class _Index:
    """What :class:`Entries` keeps beside the table for the gossip endpoint: the records
    an incoming one is skipped for, and the reply's records in table order."""

    __slots__ = ("parts", "places", "recent", "sides")

    def __init__(self, entries: Entries) -> None:
        #: The reply's records in table order: offline, then listed online (never a
        #: hint); b"" where an entry is not on that list.
        self.parts: tuple[list[bytes], list[bytes]] = ([], [])
        #: Each base URL's place in those lists.
        self.places: dict[str, int] = {}
        for url, e in entries.items():
            self.places[url] = len(self.parts[0])
            self.parts[0].append(b"" if e.online else raw_record(e))
            self.parts[1].append(raw_record(e) if e.member else b"")
        #: Records older than their member's entry, replaced since the last generation.
        self.recent: dict[bytes, bool] = {}
        #: Per side (``[offline, online]``), as wire bytes without braces: the entries'
        #: records there, and on both sides the older ones of this generation and the last
        #: (peers' views lag by a round or more: their bodies hold many of these).
        self.sides = _sides(entries, {})

    def put(self, entries: Entries, url: str, entry: Entry, old: Entry | None) -> bool:
        """Follow ``entries[url] = entry`` (``old``: the entry it replaces); False when
        the index must be built anew (a stamp went down: our own, by the clock guard)."""
        raw = raw_record(entry)
        if old is None:
            self.places[url] = len(self.parts[0])
            self.parts[0].append(b"")
            self.parts[1].append(b"")
        else:
            key, stamp, was = (
                raw_record(old)[1:-1],
                entry.server.last_update,
                old.server.last_update,
            )
            if stamp < was:
                return False
            if stamp > was and len(self.recent) > 3 * len(self.places) + 256:
                self.sides, self.recent = _sides(entries, self.recent), {}  # a new generation
            self.sides[old.online].pop(key, None)
            if stamp > was:
                self.recent[key] = self.sides[0][key] = self.sides[1][key] = True
        self.sides[entry.online][raw[1:-1]] = True
        place = self.places[url]
        self.parts[0][place] = b"" if entry.online else raw
        self.parts[1][place] = raw if entry.member else b""
        return True


def _sides(
    entries: Entries, older: dict[bytes, bool]
) -> tuple[dict[bytes, bool], dict[bytes, bool]]:
    """:attr:`_Index.sides`: ``older`` on both sides, and the entries' records on theirs."""
    sides = (dict(older), dict(older))
    for e in entries.values():
        sides[e.online][raw_record(e)[1:-1]] = True
    return sides


class Entries(dict[str, Entry]):
    """The table: base URL -> Entry; and, once the gossip endpoint asks, what lets an
    incoming record be skipped unread (:meth:`skip_index`) and the reply's records in
    table order (:meth:`reply_parts`), kept up to date by every change of the table."""

    __slots__ = ("_index",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._index: _Index | None = None

    def index(self) -> _Index:
        if self._index is None:
            self._index = _Index(self)
        return self._index

    def skip_index(self) -> _Index:
        """``sides[online]``: records (wire bytes without braces) that the merge's rule
        skips on that side: the entries' own there, and many older than their member's entry."""
        return self.index()

    def __setitem__(self, url: str, entry: Entry) -> None:
        if self._index is not None and not self._index.put(self, url, entry, self.get(url)):
            self._index = None
        super().__setitem__(url, entry)

    # Any other change (a member removed, rare) rebuilds the index at its next use: the
    # versions older than a removed member's entry go with it, and places move.
    def __delitem__(self, url: str) -> None:
        self._index = None
        super().__delitem__(url)

    def pop(self, *args: Any) -> Any:
        self._index = None
        return super().pop(*args)

    def popitem(self) -> tuple[str, Entry]:
        self._index = None
        return super().popitem()

    def clear(self) -> None:
        self._index = None
        super().clear()

    def update(self, *args: Any, **kwargs: Entry) -> None:
        self._index = None
        super().update(*args, **kwargs)

    def setdefault(self, url: str, entry: Entry) -> Entry:
        self._index = None
        return super().setdefault(url, entry)

    def __ior__(self, other: Any) -> Entries:  # type: ignore[override,misc]
        self._index = None
        return super().__ior__(other)
