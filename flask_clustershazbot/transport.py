"""Outbound HTTP (one pooled requests.Session) and master-list reads and writes.

Every failure surfaces as :class:`TransportError` or :class:`BadMessage`; the
engine treats both as a failed exchange that changes nothing.
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import _json
from .config import Settings, is_file_location, mask
from .constants import GOSSIP_PATH, INSTANCE_HEADER, LIST_PATH
from .errors import BadMessage, ShazbotError, TooLarge
from .records import ServerList
from .stats import Stats

#: Most parallel requests of one bootstrap or shutdown announcement.
MAX_PARALLEL = 8
#: Gossip bodies from this size on are sent gzip-compressed. Seed nodes take them: their
#: body parser (Express's) inflates a request whose Content-Encoding says gzip.
GZIP_MIN_BYTES = 1024


class TransportError(ShazbotError):
    """A request could not be completed (connection, timeout, HTTP status)."""


class _MaskUrls(logging.Filter):
    """Masks query values and credentials in urllib3's debug lines (a master-list token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = mask(record.getMessage()), None
        except Exception:  # a malformed record: logging reports it, never the request
            pass
        return True


# urllib3 logs each request line (path and query) at DEBUG on this logger.
_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _MaskUrls) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_MaskUrls())


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


def apply_tls(
    session: requests.Session, ca: str | None, cert: str | None, key: str | None
) -> None:
    """Verify servers against ``ca`` (requests' own bundle when None), hostnames included
    (requests always checks them), and present ``cert`` (with ``key``) for mutual TLS."""
    session.verify = ca or True
    if cert:
        session.cert = (cert, key) if key else cert


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
        apply_tls(self.session, settings.tls_ca, settings.tls_cert, settings.tls_key)

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
        except TooLarge:
            raise
        except Exception as exc:  # requests, urllib3 or a decoder: a failed exchange all the same
            raise TransportError(f"{what}: {type(exc).__name__}") from None
        finally:
            response.close()
        return b"".join(chunks)

    def _request(self, method: str, url: str, what: str, timeout: float, **kw: Any) -> bytes:
        """One request; anything but a 2xx answer within ``max_body_bytes`` is a TransportError.

        Redirects are never followed, for any request: a 3xx is a failed exchange. A
        redirect could lead gossip (and its secret) to a host SHAZBOT_ALLOWED_PEERS
        refuses, and requests turns a redirected PUT into a GET that "succeeds".
        """
        try:
            response = self.session.request(
                method, url, timeout=timeout, stream=True, allow_redirects=False, **kw
            )
        except Exception as exc:  # requests, urllib3 (LocationParseError), UnicodeError, ValueError...
            raise TransportError(f"{what}: {type(exc).__name__}: {_reason(exc)}") from None
        if not 200 <= response.status_code < 300:
            response.close()
            redirect = " (a redirect: not followed)" if 300 <= response.status_code < 400 else ""
            raise TransportError(f"{what}: HTTP {response.status_code}{redirect}")
        body = self._read(response, what)
        if self.stats is not None:
            data = kw.get("data")
            sent = len(data) if isinstance(data, (bytes, bytearray)) else 0
            self.stats.add(bytes_sent=sent, bytes_received=len(body))
        return body

    # -- gossip ------------------------------------------------------------

    def gossip(self, base_url: str, message: dict[str, Any]) -> ServerList:
        """POST our state to a peer; return its validated reply."""
        return self._post_gossip(base_url, *gossip_body(message))

    def _post_gossip(self, base_url: str, data: bytes, extra: dict[str, str]) -> ServerList:
        what = f"gossip with {base_url}"
        body = self._request(
            "POST",
            base_url + GOSSIP_PATH,
            what,
            self.settings.request_timeout,
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
        results: dict[str, ServerList | Exception] = {}
        queue = iter(urls)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    url = next(queue, None)
                if url is None:
                    return
                try:
                    results[url] = self._post_gossip(url, data, extra)
                except Exception as exc:  # every outcome is reported, none escapes
                    results[url] = exc

        # Plain threads, not a ThreadPoolExecutor: this runs at interpreter exit too (the
        # shutdown announcement from atexit), where executors refuse new work.
        threads = [threading.Thread(target=work, daemon=True) for _ in range(min(MAX_PARALLEL, len(urls)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {url: results.get(url, TransportError(f"gossip with {url}: not sent")) for url in urls}

    def identify(self, base_url: str) -> str | None:
        """The instance token that answers at ``base_url`` (None: not a clustershazbot node)."""
        try:
            response = self.session.get(
                base_url + LIST_PATH, timeout=self.settings.request_timeout, allow_redirects=False
            )
            response.close()
        except requests.RequestException as exc:
            raise TransportError(f"{base_url}: {type(exc).__name__}: {_reason(exc)}") from None
        except Exception as exc:  # urllib3 and others raise beyond requests' own types
            raise TransportError(f"{base_url}: {type(exc).__name__}") from None
        return response.headers.get(INSTANCE_HEADER)

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


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, without URLs or headers."""
    cause: BaseException = exc
    # requests' own errors are OSErrors too: look past them to the socket's (ConnectionRefusedError).
    while cause.__context__ is not None and (
        isinstance(cause, requests.RequestException) or not isinstance(cause, OSError)
    ):
        cause = cause.__context__
    return type(cause).__name__
