"""Master lists: where a node finds the cluster at start and announces itself.

One :class:`MasterList` per kind of location, chosen by the URL scheme of
``SHAZBOT_MASTER_LIST`` (see :func:`open_master_list` and docs/masterlist.md):
a path or ``file://`` URL, ``http(s)://``, ``s3://bucket/key``, ``redis://host:port/db``
and ``dns://name:port`` (read-only discovery).

Publishing merges this node's view into the stored list by the protocol's merge rule,
so announcements made at the same moment never drop each other's entries: the file
backend under a lock, HTTP (with ETags) and S3 with conditional writes retried on
conflict, Redis with one hash field per member written by a server-side script. A whole
publish, its retries included, ends within ``SHAZBOT_MASTER_LIST_TIMEOUT``: a shutdown
waits no longer than that for the master list.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ._json import decode_json, encode_json
from .config import Settings, config_key, mask
from .errors import BadMessage, ShazbotError, TooLarge, TransportError
from .records import MAX_URL_LENGTH, GossipServer, ServerList, base_url_problem, rank

if TYPE_CHECKING:
    from .transport import HttpTransport

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Random pauses after a conflict grow from 0..20 ms, doubling, to 0..this many seconds:
#: a hundred nodes announcing at once then spread their next attempts over seconds
#: instead of all retrying together against a busy server.
MAX_CONFLICT_PAUSE = 5.0
#: Redis key of the member hash when the URL names none (``?key=``).
DEFAULT_REDIS_KEY = "clustershazbot:members"
#: A Redis field (name or value) longer than this is not a record of ours (a base URL has
#: at most MAX_URL_LENGTH characters, a record about 90 more): it is never read, and the
#: next publish deletes it.
MAX_REDIS_FIELD_BYTES = 4 * MAX_URL_LENGTH
#: DNS hints are stamped this long (ms) after the oldest stamp a node accepts.
HINT_MARGIN_MS = 60_000


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
    oldest, newest = _window(now_ms, settings)
    return ServerList(
        online=tuple(s for s, on in best.values() if on and oldest <= s.last_update <= newest)
    )


class _Late(TransportError):
    """A master-list request given up on at the deadline of its read or publish."""


def _window(now_ms: int, settings: Settings) -> tuple[int, int]:
    """The oldest and the newest ``lastUpdate`` a master list keeps: within the retention,
    and no further ahead than the clock guard lets a merge accept."""
    return now_ms - settings.retention_ms, now_ms + settings.max_clock_skew_ms


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Location:
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
        return encode_json(merge_stored(stored, view, _now_ms(), self.settings).to_dict(False))

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
        late = _Late(
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


def _publish_conditionally(
    where: _Location,
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
        except _Late:
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


class FileMasterList(_Location):
    """A JSON file, updated read-merge-write under ``flock`` on a sibling ``.lock`` file."""

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        self.path = file_path(location)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._told_alone = False

    def _check_directory(self) -> None:
        # A typo'd path must not become a new directory tree and an island node.
        if not self.path.parent.is_dir():
            raise self.error(f"directory {self.path.parent} does not exist")

    def _load(self, repair: bool = False) -> ServerList | None:
        try:
            body = self.path.read_bytes()
        except FileNotFoundError:
            self._check_directory()
            return None
        except OSError as exc:
            raise self.error(str(exc.strerror)) from None
        return self.parse(body, repair)

    def read(self) -> ServerList:
        stored = self._load()
        if stored is None:
            if not self._told_alone:
                self._told_alone = True
                log.info(
                    "%s %s does not exist yet: this node starts alone and will create "
                    "it when it announces itself",
                    self.setting,
                    self.shown,
                )
            return ServerList()
        return stored

    def publish(self, view: ServerList) -> None:
        self._check_directory()
        try:
            with open(self.lock_path, "a") as lock:
                self._lock(lock.fileno())
                body = self.merged(self._load(repair=True) or ServerList(), view)
                self._replace(body)  # the lock is released when the file closes
        except OSError as exc:
            raise self.error(str(exc.strerror)) from None

    def _lock(self, fd: int) -> None:
        deadline = time.monotonic() + self.settings.master_list_timeout
        while True:  # polled, so that a stuck holder costs one timeout, not a hung thread
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self.error(f"{self.lock_path} stayed locked by another writer") from None
                time.sleep(0.005)

    def _replace(self, body: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        except BaseException:
            os.unlink(tmp)
            raise


class HttpMasterList(_Location):
    """GET the list; PUT it with ``If-Match`` when the server gives ETags (else last writer wins).

    Publishing first GETs the update URL for the stored list and its ETag. A 404 there
    (no list yet) makes the PUT carry ``If-None-Match: *``; a 403 or 405 (an update URL
    that only takes PUTs, e.g. a presigned one) makes it unconditional, as before.
    """

    def __init__(
        self, settings: Settings, setting: str, url: str, transport: HttpTransport
    ) -> None:
        super().__init__(settings, setting, url)
        self.url = url
        self.transport = transport

    def read(self) -> ServerList:
        _, _, body = self.transport.master_request("GET", self.url, self.where, {})
        return self.parse(body)

    def publish(self, view: ServerList) -> None:
        auth = {"Authorization": self.settings.master_list_update_auth}

        def fetch(deadline: float) -> tuple[ServerList, str | None]:
            status, etag, body = self.within(
                deadline,
                "GET",
                lambda: self.transport.master_request(
                    "GET", self.url, self.where, auth, accept=(403, 404, 405)
                ),
            )
            if status == 404:
                return ServerList(), "*"
            if status >= 400:
                return ServerList(), None
            return self.parse(body, repair=True), etag

        def store(body: bytes, etag: str | None, deadline: float) -> bool:
            headers = {**auth, "Content-Type": "application/json"}
            if etag == "*":
                headers["If-None-Match"] = "*"
            elif etag is not None:
                headers["If-Match"] = etag
            status, _, _ = self.within(
                deadline,
                "PUT",
                lambda: self.transport.master_request(
                    "PUT", self.url, self.where, headers, data=body
                ),
            )
            return status != 412

        _publish_conditionally(self, fetch, store, view)


class S3MasterList(_Location):
    """``s3://bucket/key`` through boto3: conditional ``put_object`` (``IfMatch``/``IfNoneMatch``).

    Credentials, region and endpoint come from boto3's usual chain (environment,
    ``~/.aws``, instance roles; ``AWS_ENDPOINT_URL`` for S3-compatible servers).
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        self.bucket, self.key = parts.netloc, unquote(parts.path.lstrip("/"))
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise self.error("needs boto3: pip install flask-clustershazbot[s3]") from None
        timeout = settings.master_list_timeout
        self.client: Any = boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def _call(self, name: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, name)(Bucket=self.bucket, Key=self.key, **kw)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in (
                "NoSuchKey",
                "404",
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
                "409",
            ):
                return code  # handled by the caller: nothing stored yet, or a conflict
            raise self.error(f"{name} failed: {code or 'ClientError'}") from None
        except BotoCoreError as exc:
            raise self.error(f"{name} failed: {type(exc).__name__}") from None

    def _get(self) -> tuple[bytes, str] | None:
        """The stored body and its ETag; None when nothing is stored yet."""
        reply = self._call("get_object")
        if isinstance(reply, str):
            return None
        if reply.get("ContentLength", 0) > self.settings.max_body_bytes:
            raise TooLarge(f"{self.where} is larger than the body limit")
        try:
            return reply["Body"].read(), str(reply["ETag"])
        except Exception as exc:  # botocore's stream errors are not one class
            raise self.error(f"get_object failed: {type(exc).__name__}") from None

    def _fetch(self, deadline: float, repair: bool = False) -> tuple[ServerList, str | None]:
        got = self.within(deadline, "get_object", self._get)
        if got is None:
            return ServerList(), None
        return self.parse(got[0], repair), got[1]

    def read(self) -> ServerList:
        return self._fetch(self.deadline())[0]

    def publish(self, view: ServerList) -> None:
        def store(body: bytes, etag: str | None, deadline: float) -> bool:
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            reply = self.within(
                deadline,
                "put_object",
                lambda: self._call(
                    "put_object", Body=body, ContentType="application/json", **condition
                ),
            )
            return not isinstance(reply, str)

        _publish_conditionally(self, lambda d: self._fetch(d, repair=True), store, view)


#: Keeps, per member, the record of highest merge rank (lastUpdate, offline, monitor), and
#: deletes every field that is not a usable record (see ``usable``) or whose stamp lies
#: outside the window kept. KEYS[1]: the hash; ARGV: the oldest and newest stamps kept,
#: the key's lifetime (ms), the longest field, then per record: baseUrl, lastUpdate,
#: offline (0/1), monitor (0/1), JSON. A script that fails is not rolled back, so every
#: decision is made before the first write. Returns {records written, fields deleted, of
#: which unusable}.
_REDIS_PUBLISH = """
local key = KEYS[1]
local oldest, newest, lifetime, longest = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])

-- A stored field's rank {lastUpdate, offline, monitor}; false for a record stamped outside
-- [oldest, newest] (a stamp beyond the clock guard would win every merge); nil for anything
-- this script does not write: too long (never fetched), not JSON, another shape, a
-- lastUpdate that is not an integer (cjson reads 1e3 and 1000.0 as numbers too: the text
-- must be digits, as a reader requires), a baseUrl that is not the field's name.
local function usable(field)
  if #field > longest or redis.call('HSTRLEN', key, field) > longest then return nil end
  local value = redis.call('HGET', key, field)
  local ok, r = pcall(cjson.decode, value)
  if not ok or type(r) ~= 'table' or r.baseUrl ~= field or type(r.monitor) ~= 'boolean'
    or type(r.online) ~= 'boolean' or type(r.lastUpdate) ~= 'number'
    or not string.find(value, '"lastUpdate"%s*:%s*%d+%s*[,}]') then
    return nil
  end
  if r.lastUpdate < oldest or r.lastUpdate > newest then return false end
  return {r.lastUpdate, r.online and 0 or 1, r.monitor and 1 or 0}
end

local writes, known, unusable = {}, {}, 0
for i = 5, #ARGV, 5 do
  local field, new = ARGV[i], {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
    tonumber(ARGV[i + 3])}
  local old = redis.call('HEXISTS', key, field) == 1 and usable(field)
  if old == nil then unusable = unusable + 1 end
  if not old or new[1] > old[1] or (new[1] == old[1] and (new[2] > old[2]
    or (new[2] == old[2] and new[3] > old[3]))) then
    writes[#writes + 1] = i
  end
  known[field] = true
end
local deletes = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if not known[field] then
    local old = usable(field)
    if not old then
      deletes[#deletes + 1] = field
      if old == nil then unusable = unusable + 1 end
    end
  end
end
for _, i in ipairs(writes) do redis.call('HSET', key, ARGV[i], ARGV[i + 4]) end
for _, field in ipairs(deletes) do redis.call('HDEL', key, field) end
redis.call('PEXPIRE', key, lifetime)
return {#writes, #deletes, unusable}
"""

#: The fields of the hash, within bounds: a field longer than the longest (ARGV[1]) is
#: skipped unread (HSTRLEN first); records adding up to more than ARGV[2] bytes are not
#: sent at all. Returns {fields skipped, field, value, field, value...}, or {-1}: too large.
_REDIS_READ = """
local key, longest, budget = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {0}
for _, field in ipairs(redis.call('HKEYS', key)) do
  local size = redis.call('HSTRLEN', key, field)
  if #field > longest or size > longest then
    out[1] = out[1] + 1
  else
    budget = budget - #field - size
    if budget < 0 then return {-1} end
    out[#out + 1] = field
    out[#out + 1] = redis.call('HGET', key, field)
  end
end
return out
"""


class RedisMasterList(_Location):
    """A Redis hash: one field per member, value ``{baseUrl, monitor, lastUpdate, online}``.

    Each publish runs one script that keeps, per member, the newer record by the merge
    rule, so concurrent announcements cannot overwrite each other; offline records stay
    as tombstones; records older than the retention or beyond the clock guard, and fields
    that are not records of ours, are deleted.
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        query = parse_qs(parts.query)
        self.key = query.pop("key", [DEFAULT_REDIS_KEY])[0]
        try:
            import redis
        except ImportError:
            raise self.error("needs redis-py: pip install flask-clustershazbot[redis]") from None
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        url = parts._replace(query="&".join(f"{k}={v[0]}" for k, v in query.items())).geturl()
        timeout = settings.master_list_timeout
        try:
            self.client: Any = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise self.error(f"not a valid Redis URL ({exc})") from None
        self.publish_script = self.client.register_script(_REDIS_PUBLISH)
        self.read_script = self.client.register_script(_REDIS_READ)

    def read(self) -> ServerList:
        """The records of the hash, read within ``max_body_bytes`` (as the other backends
        read a list): a longer field is skipped without being read, a hash whose records
        add up to more is refused (:class:`TooLarge`) without being read."""
        args = [MAX_REDIS_FIELD_BYTES, self.settings.max_body_bytes]
        try:
            reply = self.read_script(keys=[self.key], args=args)
        except self._errors as exc:
            raise self.error(f"read script failed: {type(exc).__name__}") from None
        if reply[0] < 0:
            raise TooLarge(f"{self.where} is larger than the body limit")
        skipped = reply[0]
        online: list[GossipServer] = []
        offline: list[GossipServer] = []
        newest = _window(_now_ms(), self.settings)[1]
        for field, value in zip(reply[1::2], reply[2::2], strict=True):
            try:
                data = decode_json(value, f"a record of {self.where}")
                server = GossipServer.from_dict(data, f"{self.where} record")
            except BadMessage:
                skipped += 1  # one foreign field must not hide every member
                continue
            # Only what the publish script keeps (see ``usable`` there): it drops the rest.
            if data.get("baseUrl") != field.decode("utf-8", "replace") or not isinstance(
                data.get("online"), bool
            ):
                skipped += 1
            elif server.last_update <= newest:  # beyond the clock guard: the publish drops it
                (online if data["online"] else offline).append(server)
        if skipped:
            log.warning("%s: skipped %d unusable record(s)", self.where, skipped)
        return ServerList(tuple(online), tuple(offline))

    def publish(self, view: ServerList) -> None:
        oldest, newest = _window(_now_ms(), self.settings)
        args: list[Any] = [oldest, newest, self.settings.retention_ms, MAX_REDIS_FIELD_BYTES]
        for servers, online in ((view.online, True), (view.offline, False)):
            for s in servers:
                if not oldest <= s.last_update <= newest:
                    continue  # the script would delete it at once, as merge_stored drops it
                record = {**s.to_dict(), "online": online}
                args += [
                    s.base_url,
                    s.last_update,
                    int(not online),
                    int(s.monitor),
                    encode_json(record),
                ]
        try:
            _, _, unusable = self.publish_script(keys=[self.key], args=args)
        except self._errors as exc:
            raise self.error(f"publish script failed: {type(exc).__name__}") from None
        if unusable:
            log.warning("%s: dropped %d unusable record(s) on this update", self.where, unusable)

    def close(self) -> None:
        self.client.close()


class DnsMasterList(_Location):
    """Read-only discovery: the A/AAAA records of a name (a Kubernetes headless service).

    ``dns://name:port?scheme=http&path=/&resolver=127.0.0.1:5353``: each address becomes
    ``scheme://address:port/path``, an online record with ``monitor`` false, stamped as
    old as a node still accepts (the merge ignores records older than the retention, so
    0 would be dropped): a hint that loses every merge against a real record of that
    member, yet is online in a fresh table, which is what a bootstrap needs.
    Without ``resolver`` the system resolver (``getaddrinfo``) answers; with it,
    dnspython (``pip install flask-clustershazbot[dns]``) asks that server.
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.name = parts.hostname or ""
        self.scheme = query.get("scheme", "http")
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.path = "/" + query.get("path", "/").strip("/")
        self.path += "" if self.path == "/" else "/"
        self.resolver = query.get("resolver")

    def _addresses(self) -> list[str]:
        if self.resolver is None:
            try:
                infos = socket.getaddrinfo(self.name, self.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise self.error(f"lookup failed ({exc.strerror or exc})") from None
            return [str(info[4][0]) for info in infos]
        try:
            import dns.exception
            import dns.resolver
        except ImportError:
            raise self.error(
                "resolver= needs dnspython: pip install flask-clustershazbot[dns]"
            ) from None
        host, _, port = (
            self.resolver.rpartition(":") if ":" in self.resolver else (self.resolver, "", "53")
        )
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
        resolver.lifetime = self.settings.master_list_timeout
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.to_text() for r in resolver.resolve(self.name, rdtype)]
            except dns.resolver.NoAnswer:
                continue  # e.g. no AAAA records: the A records are the answer
            except dns.exception.DNSException as exc:
                raise self.error(f"{rdtype} lookup failed ({type(exc).__name__})") from None
        return found

    def read(self) -> ServerList:
        retention = self.settings.retention_ms
        stamp = max(0, _now_ms() - retention + min(HINT_MARGIN_MS, retention // 2))
        servers: dict[str, GossipServer] = {}
        for address in self._addresses():
            host = f"[{address}]" if ":" in address else address
            url = f"{self.scheme}://{host}:{self.port}{self.path}"
            servers[url] = GossipServer(url, False, stamp)
        return ServerList(online=tuple(servers.values()))

    def publish(self, view: ServerList) -> None:
        log.debug("%s %s is read-only discovery: nothing to announce", self.setting, self.shown)


def open_master_list(
    settings: Settings, transport: HttpTransport, update: bool = False
) -> MasterList:
    """The master list at ``SHAZBOT_MASTER_LIST`` (``update``: ``SHAZBOT_MASTER_LIST_UPDATE``)."""
    location = settings.master_list_update if update else settings.master_list
    setting = config_key("master_list_update" if update else "master_list")
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # a path, file:// or a drive letter
        return FileMasterList(settings, setting, location)
    if scheme in ("http", "https"):
        return HttpMasterList(settings, setting, location, transport)
    if scheme == "s3":
        return S3MasterList(settings, setting, location)
    if scheme in ("redis", "rediss"):
        return RedisMasterList(settings, setting, location)
    if scheme == "dns":
        return DnsMasterList(settings, setting, location)
    raise ShazbotError(f"{setting}: unsupported location {mask(location)}")
