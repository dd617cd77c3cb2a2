"""Outbound HTTP (one pooled requests.Session) and master-list reads and writes.

Every failure surfaces as :class:`TransportError` or :class:`BadMessage`; the
engine treats both as a failed exchange that changes nothing.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ._json import GZIP_MIN_BYTES, decode_json, encode_json, gzip_body
from .config import Settings
from .constants import GOSSIP_PATH, INSTANCE_HEADER, LIST_PATH, PROBE_PATH
from .errors import BadMessage, TooLarge, TransportError
from .records import ServerList
from .settings_values import mask
from .stats import Stats

#: Most parallel requests of one bootstrap or shutdown announcement.
MAX_PARALLEL = 8
T = TypeVar("T")


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


def wire_body(body: bytes) -> tuple[bytes, dict[str, str]]:
    """A JSON body as sent and its extra headers (gzip from GZIP_MIN_BYTES on)."""
    if len(body) < GZIP_MIN_BYTES:
        return body, {}
    return gzip_body(body), {"Content-Encoding": "gzip"}


def gossip_body(message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The wire body of a GossipMessage and its extra headers."""
    return wire_body(encode_json(message))


def apply_tls(session: requests.Session, ca: str | None, cert: str | None, key: str | None) -> None:
    """Verify servers against ``ca`` (requests' own bundle when None), hostnames included
    (requests always checks them), and present ``cert`` (with ``key``) for mutual TLS."""
    session.verify = ca or True
    if cert:
        session.cert = (cert, key) if key else cert


class Transport(Protocol):
    """What the engine needs of the network. :class:`HttpTransport` is the real one;
    :class:`~flask_clustershazbot.testing.MemoryTransport` delivers in one process."""

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        """Send our state (a GossipMessage) to one peer; its validated reply. Any failure
        raises (a :class:`TransportError`; ``refused`` when nothing listens there)."""
        ...

    def gossip_many(
        self, base_urls: Iterable[str], message: dict[str, Any]
    ) -> dict[str, ServerList | Exception]:
        """Send the same message to several peers at once; each one's reply or failure."""
        ...

    def probe_many(
        self, helpers: list[str], target: str, timeout: float, waits: list[float]
    ) -> list[bool | Exception]:
        """Ask each helper to try ``target`` (POST /clustershazbot/probe): whether it reached
        it, or why the helper did not answer; in the order of ``helpers``."""
        ...

    def identify(self, base_url: str) -> str | None:
        """The instance token answering at ``base_url`` (the self-check); None if what
        answers is not a clustershazbot node; raises if nothing answers."""
        ...

    def reset_after_fork(self) -> None:
        """In a forked child: drop connections shared with the parent."""
        ...


class HttpTransport(Transport):
    """The network of one node: one pooled requests.Session, for its peers and (through
    :meth:`master_request`) its HTTP master lists."""

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

    def _send(
        self, method: str, url: str, what: str, timeout: float, **kw: Any
    ) -> requests.Response:
        """One request, its body streamed; whatever fails below is a TransportError.

        Redirects are never followed, for any request: a 3xx is a failed exchange. A
        redirect could lead gossip (and its secret) to a host SHAZBOT_ALLOWED_PEERS
        refuses, and requests turns a redirected PUT into a GET that "succeeds".
        """
        for resend in (True, False):
            try:
                response = self.session.request(
                    method, url, timeout=timeout, stream=True, allow_redirects=False, **kw
                )
                break
            except (
                Exception
            ) as exc:  # requests, urllib3 (LocationParseError), UnicodeError, ValueError...
                cause = _cause(exc)
                reason = type(cause).__name__
                if resend and reason in CONNECTION_DROPPED:
                    # The peer closed the connection under the request: a kept-alive one it
                    # had dropped, or it died then. Once more on a new connection, which a
                    # dead peer refuses (strong evidence); every request here is idempotent.
                    continue
                raise TransportError(  # refused: nothing listens there, evidence of a crash
                    f"{what}: {type(exc).__name__}: {reason}{self._tls_hint(cause)}",
                    refused=reason == "ConnectionRefusedError",
                ) from None
        if 300 <= response.status_code < 400:
            response.close()
            raise TransportError(f"{what}: HTTP {response.status_code} (a redirect: not followed)")
        return response

    def _tls_hint(self, cause: BaseException) -> str:
        """What to check when the server's certificate failed verification."""
        if not isinstance(cause, ssl.SSLCertVerificationError):
            return ""
        problem = str(cause.verify_message).rstrip(".")
        if cause.verify_code in X509_HOST_MISMATCH:
            return f" ({problem}: the certificate must name the host of the URL)"
        ca = self.settings.tls_ca
        trusted = f"SHAZBOT_TLS_CA {ca}" if ca else "requests' CA bundle (SHAZBOT_TLS_CA is unset)"
        return (
            f" ({problem}: the certificate does not chain to {trusted}; "
            "SHAZBOT_TLS_CA names the CA that signed the cluster's certificates)"
        )

    def _body(self, response: requests.Response, what: str, sent: Any) -> bytes:
        """The body of a response (bounded) and the bytes counted both ways."""
        body = self._read(response, what)
        if self.stats is not None:
            size = len(sent) if isinstance(sent, (bytes, bytearray)) else 0
            self.stats.add(bytes_sent=size, bytes_received=len(body))
        return body

    def _request(self, method: str, url: str, what: str, timeout: float, **kw: Any) -> bytes:
        """One request; anything but a 2xx answer within ``max_body_bytes`` is a TransportError."""
        response = self._send(method, url, what, timeout, **kw)
        if not 200 <= response.status_code < 300:
            response.close()
            # Gossip and probes carry SHAZBOT_SECRET: a 401 is a secret the peer refuses.
            hint = (
                " (the peer refuses this node's SHAZBOT_SECRET: the two nodes' secrets differ; "
                "during a rotation every node accepts a new secret before any sends it)"
                if response.status_code == 401
                else ""
            )
            raise TransportError(f"{what}: HTTP {response.status_code}{hint}")
        return self._body(response, what, kw.get("data"))

    # -- gossip ------------------------------------------------------------

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
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
        # As long as MAX_PARALLEL threads would take at worst, also when sent one by one.
        budget = math.ceil(len(urls) / MAX_PARALLEL) * self.settings.request_timeout
        calls = [partial(self._post_gossip, u, data, extra) for u in urls]
        return dict(zip(urls, _in_parallel(calls, budget), strict=True))

    def identify(self, base_url: str) -> str | None:
        """The instance token that answers at ``base_url`` (None: not a clustershazbot node)."""
        response = self._send("GET", base_url + LIST_PATH, base_url, self.settings.request_timeout)
        response.close()
        return response.headers.get(INSTANCE_HEADER)

    # -- indirect probes -----------------------------------------------------

    def probe(self, helper: str, target: str, timeout: float, wait: float) -> bool:
        """Ask ``helper`` to try ``target`` within ``timeout`` s; wait ``wait`` s for its answer.

        True if the helper reached the target, False if it could not; an error if the
        helper itself did not answer (a 404 from a node of the original included).
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
    ) -> list[bool | Exception]:
        """:meth:`probe` through several helpers in parallel; each gets its outcome."""
        return _in_parallel(
            [
                partial(self.probe, h, target, timeout, w)
                for h, w in zip(helpers, waits, strict=True)
            ]
        )

    # -- the HTTP client of the master lists (the masterlist package) ----------

    def master_request(
        self,
        method: str,
        url: str,
        what: str,
        headers: dict[str, str],
        data: bytes = b"",
        accept: tuple[int, ...] = (412,),
    ) -> tuple[int, str | None, bytes]:
        """One master-list request: (status, ETag, body); the ``accept`` statuses from 400 on
        are returned, every other one raised. ``what`` names the setting and masked URL.
        """
        response = self._send(
            method, url, what, self.settings.master_list_timeout, headers=headers, data=data or None
        )
        if response.status_code >= 400 and response.status_code not in accept:
            response.close()
            raise TransportError(f"{what}: {method} answered HTTP {response.status_code}")
        return response.status_code, response.headers.get("ETag"), self._body(response, what, data)


def _in_parallel(
    calls: Sequence[Callable[[], T]], budget: float | None = None
) -> list[T | Exception]:
    """Run ``calls`` on up to MAX_PARALLEL threads, the caller's among them; each result or
    exception, in order. With ``budget``, no call starts later than ``budget`` seconds from
    now: those left are reported not sent.

    The caller takes calls too, so that they still go out, one after another, where no new
    thread can be started: Python 3.12.0 and 3.12.1 refuse them once the interpreter is
    exiting, when atexit sends the shutdown announcement. Plain threads, not a
    ThreadPoolExecutor, for the same reason on every version: executors refuse new work then.
    """
    results: list[T | Exception] = [TransportError("not sent in the time allowed")] * len(calls)
    jobs = iter(enumerate(calls))
    lock = threading.Lock()
    deadline = None if budget is None else time.monotonic() + budget

    def work() -> None:
        while True:
            with lock:
                if deadline is not None and time.monotonic() > deadline:
                    return
                index, call = next(jobs, (-1, None))
            if call is None:
                return
            try:
                results[index] = call()
            except Exception as exc:  # every outcome is reported, none escapes
                results[index] = exc

    helpers: list[threading.Thread] = []
    for _ in range(min(MAX_PARALLEL, len(calls)) - 1):
        helper = threading.Thread(target=work, daemon=True)
        try:
            helper.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            break
        helpers.append(helper)
    work()
    for helper in helpers:
        helper.join()
    return results


#: Why a request fails when the peer closes its connection under it (see HttpTransport._send).
CONNECTION_DROPPED = frozenset(
    {"ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError", "RemoteDisconnected"}
)


#: OpenSSL's verify codes of a certificate that does not name the host (name, IP) asked for.
X509_HOST_MISMATCH = frozenset({62, 64})


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause of a requests error (its type names it without URLs or headers)."""
    cause: BaseException = exc
    # requests' own errors are OSErrors too: look past them to the socket's (ConnectionRefusedError).
    while cause.__context__ is not None and (
        isinstance(cause, requests.RequestException) or not isinstance(cause, OSError)
    ):
        cause = cause.__context__
    return cause
