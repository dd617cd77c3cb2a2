"""Gossip messages decoded fast (with msgspec, when installed): what the gossip endpoint
reads. A compact body of a known layout is split into its records' bytes unread, and the
records the table holds are skipped by one lookup (:meth:`Incoming.news`); whatever this
path refuses, the standard one (:meth:`~flask_clustershazbot.records.ServerList.from_dict`)
decides, so it changes speed only, never what is accepted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import filterfalse
from typing import Annotated, Any, Literal

from . import _json
from . import records as wire
from .records import MAX_LAST_UPDATE, GossipServer, ServerList, new_server, shown

try:
    import msgspec
except ImportError:  # pragma: no cover - depends on the environment
    _decode_message = None
else:

    class _Record(msgspec.Struct, rename="camel", gc=False):
        """A wire record, typed and range-checked by msgspec in C (its base URL is not)."""

        base_url: str
        monitor: bool
        last_update: Annotated[int, msgspec.Meta(ge=0, le=MAX_LAST_UPDATE)]

    class _Message(msgspec.Struct, gc=False):
        """A GossipMessage whose two lists msgspec checks as JSON only: their records are
        decoded when needed (:func:`_records`, :meth:`Incoming.news`)."""

        message: Literal["gossip"]
        online: msgspec.Raw
        offline: msgspec.Raw = msgspec.Raw(b"[]")

    _decode_message = msgspec.json.Decoder(_Message).decode
    _decode_records = msgspec.json.Decoder(list[_Record]).decode
    _decode_record = msgspec.json.Decoder(_Record).decode


class _Pieces(list[bytes]):
    """A compact JSON list of objects (``[{...},{...}]``) split at ``},{``: each item an
    object's text without its braces, as :meth:`Membership.skip_index` keys records.

    A split inside a string makes an item that is no whole object. If every item with its
    braces is one valid object, the list is exactly those objects (JSON's grammar has one
    reading of a text), so the split was right; :func:`_side` checks that before it trusts one.
    """

    __slots__ = ()


class _Refused(Exception):
    """msgspec refuses a record decoded late (:func:`_side`): the standard path decides."""


class Incoming:
    """A GossipMessage checked by msgspec (valid JSON, ``"message": "gossip"``, two lists),
    its records not all decoded yet: a compact list stays bytes (:class:`_Pieces`), any
    other is decoded whole. ``online``/``offline`` are true when they hold records.

    :meth:`news` keeps the records that could change the table: a record the table holds
    (or an older version of one, see :meth:`Membership.skip_index`) is skipped by one lookup
    of its bytes, before any object is made; one whose base URL is a table key has a
    canonical base URL (the table holds no other), and if it does not outrank the entry
    (the merge's own rule), it is skipped too.
    """

    __slots__ = ("offline", "online", "raw")

    def __init__(self, online: Sequence[Any], offline: Sequence[Any], raw: bytes = b"") -> None:
        self.online, self.offline, self.raw = online, offline, raw

    def news(self, entries: Mapping[str, Any]) -> ServerList:
        """The records that could change ``entries`` (base URL -> membership Entry), validated
        as :meth:`ServerList.from_dict` would: bad ones skipped and counted."""
        try:
            online, skipped, problem = _side(self.online, True, entries, "online")
            offline, more, other = _side(self.offline, False, entries, "offline")
        except _Refused:  # as when msgspec refuses the whole message: all of it, the standard way
            return ServerList.from_dict(_json.decode_json(self.raw, "the body"), message="gossip")
        return ServerList(online, offline, skipped + more, problem or other)


def _side(
    records: Sequence[Any], online: bool, entries: Mapping[str, Any], key: str
) -> tuple[tuple[GossipServer, ...], int, str | None]:
    """:func:`_news` of one list; the items of :class:`_Pieces` that the table's skip index
    holds are skipped unread, the others decoded."""
    if type(records) is not _Pieces:
        return _news(records, online, entries, key)
    skip_index = getattr(entries, "skip_index", None)
    misses: Sequence[bytes] = records
    if skip_index is not None:
        misses = list(filterfalse(skip_index().sides[online].__contains__, records))
        if not misses:
            return (), 0, None
    try:
        found = [_decode_record(b"{%b}" % piece) for piece in misses]
    except (msgspec.DecodeError, RecursionError):
        found = None  # a bad record, or a split inside a string
    if found is not None:
        news = _news(found, online, entries, key)
        if not news[1]:
            return news
    # Decoded whole, so that a problem names the record's place in the list as the standard path does.
    try:
        whole = _decode_records(b"[{%b}]" % b"},{".join(records))
    except (msgspec.DecodeError, RecursionError):
        raise _Refused from None
    return _news(whole, online, entries, key)


def _news(
    records: Sequence[Any], online: bool, entries: Mapping[str, Any], key: str
) -> tuple[tuple[GossipServer, ...], int, str | None]:
    out: list[GossipServer] = []
    skipped, first = 0, None
    get, check, new = entries.get, wire.check_url, new_server  # the records module's rule
    for r in records:
        e = get(r.base_url)
        if e is not None:  # skipped as Membership.merge skips them, before any object is made
            known, stamp = e.server, r.last_update
            if stamp < known.last_update or (
                stamp == known.last_update and e.online is online and known.monitor is r.monitor
            ):
                continue
        canonical, problem = check(r.base_url, True)
        if problem is not None:  # worded as the standard path words it
            skipped += 1
            first = first or f"{key}[{records.index(r)}].baseUrl {problem}: {shown(r.base_url)}"
            continue
        out.append(new(canonical, r.monitor, r.last_update))
    return tuple(out), skipped, first


def _records(array: bytes) -> Sequence[Any]:
    """A list of the message: empty, split (:class:`_Pieces`) when compact, else decoded."""
    if array == b"[]":
        return []
    if array.startswith(b"[{") and array.endswith(b"}]"):
        return _Pieces(array[2:-2].split(b"},{"))
    return _decode_records(array)


#: How nodes write a GossipMessage, compactly: ours, then the original's (a JS object
#: literal's key order). Anything else goes through msgspec's decoder.
_LAYOUTS = (
    (b'{"online":[', b'],"message":"gossip"}'),
    (b'{"message":"gossip","online":[', b"]}"),
)
_OFFLINE = b'],"offline":['


def _compact(raw: bytes) -> tuple[_Pieces | list[Any], _Pieces | list[Any]] | None:
    """The two lists of a message in one of :data:`_LAYOUTS`, split into records unread, or
    None. Not checked here: :func:`_side` trusts a split once every record in it is one
    valid object (then the whole body is one valid message, of this very shape)."""
    for head, tail in _LAYOUTS:
        if raw.startswith(head) and raw.endswith(tail):
            middle = raw.find(_OFFLINE, len(head))
            if middle < 0:
                continue
            lists: list[_Pieces | list[Any]] = []
            for start, end in (
                (len(head), middle),
                (middle + len(_OFFLINE), len(raw) - len(tail)),
            ):
                if start == end:
                    lists.append([])
                elif raw[start] == ord("{") and raw[end - 1] == ord("}") and end - start > 1:
                    lists.append(_Pieces(raw[start + 1 : end - 1].split(b"},{")))
            if len(lists) == 2:
                return lists[0], lists[1]
    return None


def decode_gossip(raw: bytes) -> Incoming | None:
    """``raw`` checked by msgspec, or None: msgspec is not installed (or
    :func:`_json.force_std` turned it off), or it refuses ``raw``. The standard path
    (:func:`_json.loads`, :meth:`ServerList.from_dict`) then decides, with its errors, so
    msgspec changes speed only, never what is accepted; so does :meth:`Incoming.news`
    where msgspec refuses a record it decodes late. A compact body of a known layout
    (:func:`_compact`) is not decoded here at all.
    """
    # Non-ASCII bodies too: msgspec does not check the UTF-8 of the fields it skips.
    if _decode_message is None or not _json.TYPED or not raw.isascii():
        return None
    lists = _compact(raw)
    if lists is not None:
        return Incoming(*lists, raw)
    try:
        message = _decode_message(raw)
        online, offline = _records(bytes(message.online)), _records(bytes(message.offline))
    except (msgspec.DecodeError, RecursionError):  # ValidationError included; deep nesting
        return None
    return Incoming(online, offline, raw)
