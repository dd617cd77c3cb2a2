"""What every master list shares: the protocol (:class:`MasterList`), the merge of a
view into a stored list, time budgets and conditional publishing."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from .._json import decode_json, encode_json
from ..config import Settings
from ..errors import BadMessage, TooLarge, TransportError
from ..records import GossipServer, ServerList, base_url_problem, rank
from ..settings_values import mask

log = logging.getLogger("flask_clustershazbot.masterlist")
T = TypeVar("T")

#: Random pauses after a conflict grow from 0..20 ms, doubling, to 0..this many seconds:
#: a hundred nodes announcing at once then spread their next attempts over seconds
#: instead of all retrying together against a busy server.
MAX_CONFLICT_PAUSE = 5.0


def file_path(location: str) -> Path:
    """The local path of a ``file://`` URL or a plain path."""
    if location.startswith("file://"):
        return Path(unquote(urlsplit(location).path))
    return Path(location)


class MasterList(Protocol):
    """The shared list of members that new nodes bootstrap from."""

    def read(self) -> ServerList:
        """The stored list; an empty one if nothing was published yet."""
        ...

    def publish(self, view: ServerList) -> None:
        """Merge this node's view (online and offline records) into the stored list.

        Records stored by others at the same moment are kept: the merge rule decides
        per member (newer ``lastUpdate`` wins; on equal stamps offline wins).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class NodeMasterList(MasterList, Protocol):
    """What a node uses (the engine's seam): the list it reads and the one it updates, as
    one (:class:`~flask_clustershazbot.masterlist.MasterLists`)."""

    def reset_after_fork(self) -> None:
        """In a forked child: drop connections shared with the parent."""
        ...


def merge_stored(
    stored: ServerList, view: ServerList, now_ms: int, settings: Settings
) -> ServerList:
    """The online records of ``stored`` merged with ``view``, as they are to be stored.

    Per member the record of highest merge rank wins (records ended offline are dropped),
    then online records older than the retention or stamped beyond the clock skew are
    dropped: nobody else removes a crashed node's entry when no live node saw it go
    (its last heartbeat then ages out after ``SHAZBOT_RETENTION``).
    """
    best: dict[str, tuple[GossipServer, bool]] = {}
    for servers, online in (
        (stored.online, True),
        (stored.offline, False),
        (view.online, True),
        (view.offline, False),
    ):
        for server in servers:
            if base_url_problem(server.base_url):
                continue  # never written: no reader would accept it (an old state file's)
            old = best.get(server.base_url)
            if old is None or rank(server, online) > rank(*old):
                best[server.base_url] = (server, online)
    oldest, newest = window(now_ms, settings)
    return ServerList(
        online=tuple(s for s, on in best.values() if on and oldest <= s.last_update <= newest)
    )


class Late(TransportError):
    """A master-list request given up on at the deadline of its read or publish."""


def window(now_ms: int, settings: Settings) -> tuple[int, int]:
    """The oldest and the newest ``lastUpdate`` a master list keeps: within the retention,
    and no further ahead than the clock guard lets a merge accept."""
    return now_ms - settings.retention_ms, now_ms + settings.max_clock_skew_ms


def now_ms() -> int:
    return int(time.time() * 1000)


class Location:
    """Shared parts: the setting it came from, the masked location, parsing the stored JSON."""

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        self.settings = settings
        self.setting = setting
        self.shown = mask(location)
        self.where = f"{setting} {self.shown}"

    def error(self, problem: str) -> TransportError:
        return TransportError(f"{self.where}: {problem}")

    def parse(self, body: bytes, repair: bool = False) -> ServerList:
        """The stored list, validated as a peer's message is: a list of the wrong shape is
        refused; an invalid record is skipped (the engine counts and logs it on a read).

        ``repair`` (before a write): the skipped records are left out of what is written,
        with a warning, so that one bad entry (an older writer's, a hand edit) goes for good.
        """
        if len(body) > self.settings.max_body_bytes:
            raise TooLarge(f"{self.where} is larger than the body limit")
        try:
            servers = ServerList.from_dict(decode_json(body, "the master list"))
        except BadMessage as exc:
            raise BadMessage(f'{self.where}: {exc} (expected {{"online": [...]}})') from None
        if repair and servers.skipped:
            log.warning(
                "%s: dropping %d unusable record(s) from it on this update (first: %s)",
                self.where,
                servers.skipped,
                servers.problem,
            )
        return servers

    def merged(self, stored: ServerList, view: ServerList) -> bytes:
        return encode_json(merge_stored(stored, view, now_ms(), self.settings).to_dict(False))

    def deadline(self) -> float:
        """When (``time.monotonic()``) a publish begun now must be over, retries included."""
        return time.monotonic() + self.settings.master_list_timeout

    def within(self, deadline: float, what: str, call: Callable[[], T]) -> T:
        """``call()``, given up on at ``deadline``.

        Neither requests nor boto3 bound a whole request (their timeouts are per socket
        operation, and boto3 retries by itself), so the call runs in a helper thread that,
        given up on, ends by those timeouts. Where no thread can start (at interpreter exit
        on Python 3.12.0 and 3.12.1) it runs in the caller's, bounded by them alone.
        """
        left = deadline - time.monotonic()
        late = Late(
            f"{self.where}: {what} did not finish within SHAZBOT_MASTER_LIST_TIMEOUT "
            f"({self.settings.master_list_timeout:g} s)"
        )
        if left <= 0:
            raise late
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as exc:  # handed to the caller
                outcome.append((False, exc))

        helper = threading.Thread(target=run, name="clustershazbot-master-list", daemon=True)
        try:
            helper.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return call()
        helper.join(left)
        if not outcome:
            raise late
        done, value = outcome[0]
        if not done:
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def publish_conditionally(
    where: Location,
    fetch: Callable[[float], tuple[ServerList, str | None]],
    store: Callable[[bytes, str | None, float], bool],
    view: ServerList,
) -> None:
    """Read (with a version tag), merge, write if still that version; retry on conflict;
    all of it within ``SHAZBOT_MASTER_LIST_TIMEOUT``, the deadline ``fetch`` and ``store``
    are given (a shutdown must not wait on other writers for minutes).

    ``store`` returns False when the stored list changed since ``fetch`` (HTTP 412).
    """
    deadline = where.deadline()
    conflicts = 0
    while True:
        try:
            stored, tag = fetch(deadline)
            if store(where.merged(stored, view), tag, deadline):
                return
        except Late:
            if not conflicts:
                raise
            break  # the conflicts are why: the attempt after them ran out of time
        conflicts += 1
        # Another node wrote first: a random pause spreads the next attempts out.
        pause = random.uniform(0, min(MAX_CONFLICT_PAUSE, 0.01 * 2**conflicts))
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    raise where.error(
        f"gave up after {conflicts} conflicting writes within SHAZBOT_MASTER_LIST_TIMEOUT "
        f"({where.settings.master_list_timeout:g} s): other writers changed the list "
        "between each read and write"
    )
