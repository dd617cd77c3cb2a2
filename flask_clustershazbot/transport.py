"""Outbound HTTP (one pooled requests.Session) and master-list reads and writes.

Every failure surfaces as :class:`TransportError` or :class:`BadMessage`; the
engine treats both as a failed exchange that changes nothing.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import _json
from .config import Settings, is_file_location
from .errors import BadMessage, ShazbotError, TooLarge
from .metrics import Stats
from .records import ServerList

GOSSIP_PATH = "clustershazbot/gossip"
#: The indirect-probe extension (docs/protocol-notes.md); seed nodes answer 404.
PROBE_PATH = "clustershazbot/probe"
#: Most parallel requests of one bootstrap or shutdown announcement.
MAX_PARALLEL = 8
#: Gossip bodies from this size on are sent gzip-compressed. Seed nodes take them: their
#: body parser (Express's) inflates a request whose Content-Encoding says gzip.
GZIP_MIN_BYTES = 1024


class TransportError(ShazbotError):
    """A request could not be completed (connection, timeout, HTTP status)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        #: The connection was refused (nothing listens): strong evidence that the peer is down,
        #: unlike a timeout or a lost message.
        self.refused = refused


def decode_json(body: bytes, what: str) -> Any:
    """Parse JSON; anything that is not valid JSON is a :class:`BadMessage`."""
    try:
        return _json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"{what} is not valid JSON ({type(exc).__name__})") from None


def encode_json(data: Any) -> bytes:
    return _json.dumps(data)


def gzip_body(body: bytes) -> bytes:
    """Level 1: whole-state messages shrink about 14 times, at a third of level 6's cost."""
    return gzip.compress(body, compresslevel=1, mtime=0)


def gossip_body(message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The wire body of a GossipMessage and its extra headers (gzip from GZIP_MIN_BYTES on)."""
    body = encode_json(message)
    if len(body) < GZIP_MIN_BYTES:
        return body, {}
    return gzip_body(body), {"Content-Encoding": "gzip"}


def file_path(location: str) -> Path:
    """The local path of a ``file://`` URL or a plain path."""
    if location.startswith("file://"):
        return Path(unquote(urlsplit(location).path))
    return Path(location)


class Transport:
    """HTTP and file I/O of one node."""

    def __init__(self, settings: Settings, stats: Stats | None = None) -> None:
        self.settings = settings
        self.stats = stats  # the engine's counters: bytes sent and received
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = False  # peers are addressed directly, never through a proxy

    def close(self) -> None:
        self.session.close()

    def reset_after_fork(self) -> None:
        """Pooled connections are shared with the parent after fork: start afresh."""
        self.__init__(self.settings, self.stats)  # type: ignore[misc]

    def _read(self, response: requests.Response, what: str) -> bytes:
        """The body of ``response``, bounded by ``max_body_bytes`` after decompression."""
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{what} is larger than {limit} bytes")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise TransportError(f"{what}: {type(exc).__name__}") from None
        finally:
            response.close()
        return b"".join(chunks)

    def _request(self, method: str, url: str, what: str, timeout: float, **kw: Any) -> bytes:
        try:
            response = self.session.request(method, url, timeout=timeout, stream=True, **kw)
        except requests.RequestException as exc:
            reason = _reason(exc)
            raise TransportError(
                f"{what}: {type(exc).__name__}: {reason}", refused=reason == "ConnectionRefusedError"
            ) from None
        if response.status_code >= 400:
            response.close()
            raise TransportError(f"{what}: HTTP {response.status_code}")
        body = self._read(response, what)
        if self.stats is not None:
            data = kw.get("data")
            sent = len(data) if isinstance(data, (bytes, bytearray)) else 0
            self.stats.add(bytes_sent=sent, bytes_received=len(body))
        return body

    # -- gossip ------------------------------------------------------------

    def gossip(self, base_url: str, message: dict[str, Any], timeout: float | None = None) -> ServerList:
        """POST our state to a peer; return its validated reply. ``timeout`` defaults to
        ``SHAZBOT_REQUEST_TIMEOUT``."""
        return self._post_gossip(base_url, *gossip_body(message), timeout=timeout)

    def _post_gossip(
        self, base_url: str, data: bytes, extra: dict[str, str], timeout: float | None = None
    ) -> ServerList:
        what = f"gossip with {base_url}"
        body = self._request(
            "POST",
            base_url + GOSSIP_PATH,
            what,
            timeout or self.settings.request_timeout,
            data=data,
            headers={
                "Content-Type": "application/json",
                "Authorization": self.settings.secret,
                "Accept-Encoding": "gzip",  # requests inflates a gzip reply (within _read's limit)
                **extra,
            },
        )
        return ServerList.from_dict(decode_json(body, f"the reply of {base_url}"))

    def gossip_many(
        self, base_urls: Iterable[str], message: dict[str, Any]
    ) -> dict[str, ServerList | Exception]:
        """Send the same message to several peers in parallel; each gets its outcome."""
        urls = list(dict.fromkeys(base_urls))
        if not urls:
            return {}
        data, extra = gossip_body(message)  # encoded and compressed once for all

        def one(url: str) -> ServerList | Exception:
            try:
                return self._post_gossip(url, data, extra)
            except ShazbotError as exc:
                return exc

        with ThreadPoolExecutor(min(MAX_PARALLEL, len(urls))) as pool:
            return dict(zip(urls, pool.map(one, urls), strict=True))

    # -- indirect probes -----------------------------------------------------

    def probe(self, helper: str, target: str, timeout: float, wait: float) -> bool:
        """Ask ``helper`` to try ``target`` within ``timeout`` s; wait ``wait`` s for its answer.

        True if the helper reached the target, False if it could not; an error if the
        helper itself did not answer (a seed node's 404 included).
        """
        body = self._request(
            "POST",
            helper + PROBE_PATH,
            f"probe through {helper}",
            wait,
            data=encode_json({"message": "probe", "baseUrl": target, "timeout": timeout}),
            headers={"Content-Type": "application/json", "Authorization": self.settings.secret},
        )
        reply = decode_json(body, f"the probe reply of {helper}")
        if not isinstance(reply, dict) or not isinstance(reply.get("reachable"), bool):
            raise BadMessage(f'the probe reply of {helper} must be {{"reachable": true or false}}')
        return bool(reply["reachable"])

    def probe_many(
        self, helpers: list[str], target: str, timeout: float, waits: list[float]
    ) -> list[bool | ShazbotError]:
        """:meth:`probe` through several helpers in parallel; each gets its outcome."""

        def one(helper: str, wait: float) -> bool | ShazbotError:
            try:
                return self.probe(helper, target, timeout, wait)
            except ShazbotError as exc:
                return exc

        if not helpers:
            return []
        with ThreadPoolExecutor(len(helpers)) as pool:
            return list(pool.map(one, helpers, waits))

    # -- master list -------------------------------------------------------

    def read_master_list(self) -> ServerList:
        location = self.settings.master_list
        if is_file_location(location):
            path = file_path(location)
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                return ServerList()  # nobody has announced yet
            except OSError as exc:
                raise TransportError(f"master list file {path}: {exc.strerror}") from None
            if len(body) > self.settings.max_body_bytes:
                raise TooLarge(f"master list file {path} is larger than the body limit")
        else:
            body = self._request("GET", location, "master list", self.settings.master_list_timeout)
        return ServerList.from_dict(decode_json(body, "the master list"))

    def write_master_list(self, servers: ServerList) -> None:
        """Upload ``{"online": [...]}``: PUT over HTTP(S), or an atomic file replace."""
        body = encode_json(servers.to_dict(include_offline=False))
        location = self.settings.master_list_update
        if not is_file_location(location):
            self._request(
                "PUT",
                location,
                "master list update",
                self.settings.master_list_timeout,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": self.settings.master_list_update_auth,
                },
            )
            return
        path = file_path(location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)  # readers see the old file or the new one, never half
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise TransportError(f"master list file {path}: {exc.strerror}") from None


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause of a requests error, without URLs or headers."""
    cause: BaseException = exc
    # requests' own errors are OSErrors too: look past them to the socket's (ConnectionRefusedError).
    while cause.__context__ is not None and (
        isinstance(cause, requests.RequestException) or not isinstance(cause, OSError)
    ):
        cause = cause.__context__
    return type(cause).__name__
