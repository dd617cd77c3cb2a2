"""The blueprint: ``/clustershazbot/gossip``, ``/list``, ``/control`` and ``/probe``. Defined at import time."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import (
    ClientDisconnected,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.http import parse_accept_header

from ._json import GZIP_MIN_BYTES, decode_json, encode_json, gzip_body
from .constants import EXTENSION_KEY, INSTANCE_HEADER, PREFIX
from .engine import Engine
from .errors import BadMessage, ShazbotError, TooLarge

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

blueprint = Blueprint("clustershazbot", __name__, url_prefix="/" + PREFIX)
#: Every path of the protocol starts with this.


def current_engine() -> Engine:
    """The engine of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def _json(data: Any, status: int = 200) -> Response:
    body = data if isinstance(data, bytes) else encode_json(data)  # bytes: encoded already
    body, headers = reply_encoding(body, request.headers.get("Accept-Encoding"))
    response = current_app.response_class(body, status, mimetype="application/json")
    response.headers.extend(headers)  # a new response: no other Vary to keep
    return response


def reply_encoding(body: bytes, accept_encoding: str | None) -> tuple[bytes, list[tuple[str, str]]]:
    """A JSON reply's body and encoding headers: gzip only for a client that asked for it
    (nodes of the original may not, and get plain JSON)."""
    headers = [("Vary", "Accept-Encoding")]
    if (
        len(body) >= GZIP_MIN_BYTES
        and accept_encoding
        and parse_accept_header(accept_encoding)["gzip"] > 0
    ):
        return gzip_body(body), [*headers, ("Content-Encoding", "gzip")]
    return body, headers


def read_body(limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes after gzip decompression."""
    return decode_json(read_raw(limit), "the body")


def read_raw(limit: int) -> bytes:
    """The request's body bytes, at most ``limit`` after gzip decompression (and as sent,
    within the app's ``MAX_CONTENT_LENGTH`` too)."""
    sent_limit = min(limit, current_app.config["MAX_CONTENT_LENGTH"] or limit)
    # werkzeug reads a Content-Length it cannot parse as 0, and leaves it out when chunked.
    declared = None if request.content_length is None else request.headers.get("Content-Length")
    length = content_length(declared, sent_limit)
    try:
        raw = request.stream.read(sent_limit + 1)
    except ClientDisconnected:  # not one byte came; werkzeug's own error is an HTML page
        raise BadMessage(HUNG_UP) from None
    except RequestEntityTooLarge:  # chunked, beyond MAX_CONTENT_LENGTH
        raise TooLarge(f"the body is larger than {sent_limit} bytes") from None
    if len(raw) > sent_limit:
        raise TooLarge(f"the body is larger than {sent_limit} bytes")
    if length is not None and len(raw) < length:
        raise BadMessage(HUNG_UP)
    return inflate(raw, request.headers.get("Content-Encoding"), limit)


HUNG_UP = "the body ended before its Content-Length: the client hung up"

#: A Content-Length of more digits is beyond any body limit: it is refused as too large
#: without int(), which raises ValueError past 4,300 digits.
_LENGTH_DIGITS = 18


def content_length(value: str | None, limit: int) -> int | None:
    """A request's ``Content-Length`` (None when not given), at most ``limit``: TooLarge
    beyond it, BadMessage unless it is ASCII digits (``int()`` also takes ``+5``, ``5_0``
    and other scripts' digits). The fast path and the route parse it here, alike."""
    if value is None:
        return None
    digits = value.strip(" \t").lstrip("0") or "0"
    if not (digits.isascii() and digits.isdigit()):
        raise BadMessage("the Content-Length header is not a number of bytes")
    if len(digits) > _LENGTH_DIGITS or int(digits) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    return int(digits)


def inflate(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """A request body as sent (``Content-Encoding`` gzip or none), at most ``limit``
    bytes after decompression. A gzip body is one whole member, trailer included."""
    if (content_encoding or "").lower() != "gzip":
        return raw
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise BadMessage("the body is not valid gzip") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the body is larger than {limit} bytes after decompression")
    # zlib checks the CRC and length trailer only when it gets there: a body cut short
    # before it, or one with more after it (a second member, garbage), inflates silently.
    if not inflater.eof:
        raise BadMessage("the gzip body is cut short: it ends before its CRC and length")
    if inflater.unused_data:
        raise BadMessage("the gzip body has data after its end (a second member or garbage)")
    return raw


@blueprint.after_request
def _count_bytes(response: Response) -> Response:
    """Body bytes of the requests this node answers, for its stats (see metrics.py); and
    the instance token, by which a node finds out whether its base URL leads back to it."""
    engine = current_engine()
    engine.stats.add(
        bytes_received=request.content_length or 0, bytes_sent=response.content_length or 0
    )
    response.headers[INSTANCE_HEADER] = engine.instance
    return response


@blueprint.before_app_request
def _json_routing_errors() -> Response | None:
    """404 and 405 under ``/clustershazbot/`` are JSON, as every error of the protocol.

    Unmatched URLs never reach a blueprint's error handlers, and an app-wide handler
    would replace the app's own: the routing error, raised only after the
    before-request functions, is answered here instead, for this prefix only.
    """
    exc = request.routing_exception
    if not isinstance(exc, (NotFound, MethodNotAllowed)) or not request.path.startswith(
        f"/{PREFIX}/"
    ):
        return None
    response = current_app.response_class(
        encode_json({"error": f"{exc.code} {exc.name}"}), exc.code, mimetype="application/json"
    )
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


@blueprint.errorhandler(ShazbotError)
def _error(exc: ShazbotError) -> Response:
    return _json({"error": str(exc)}, exc.status)


@blueprint.post("/gossip")
def gossip() -> Response:
    engine, auth = current_engine(), request.headers.get("Authorization")
    sender = _sender()
    engine.authorize(auth, False, sender)  # before reading: strangers cost no parsing
    return _json(engine.answer_gossip(read_raw(engine.settings.max_body_bytes), sender))


@blueprint.get("/list")
def server_list() -> Response:
    return _json(current_engine().handle_list(request.headers.get("Authorization"), _sender()))


def _sender() -> str:
    """Where the request came from, for log lines: ``a gossip request from 10.0.0.5``."""
    return f"a {request.path.rsplit('/', 1)[-1]} request from {request.remote_addr}"


def _posted(control: bool, answer: Callable[[Engine, Any], dict[str, Any]]) -> Response:
    """A JSON POST: the secret checked before the body is read (strangers cost no parsing)."""
    engine = current_engine()
    engine.authorize(request.headers.get("Authorization"), control, _sender())
    return _json(answer(engine, read_body(engine.settings.max_body_bytes)))


@blueprint.post("/control")
def control() -> Response:
    return _posted(True, Engine.answer_control)


@blueprint.post("/probe")
def probe() -> Response:
    """Indirect probe (an extension; nodes of the original answer 404): try a member for the asker."""
    return _posted(False, Engine.answer_probe)


class FastGossip:
    """WSGI middleware in front of the app: a gossip request that the engine accepts is
    answered here, without Flask's dispatch (docs/performance.md: a quarter of a request's
    CPU at N = 100). ``SHAZBOT_FAST_GOSSIP`` turns it off.

    The route stays the app's (``flask routes``), and everything else goes to it
    unchanged: other paths and methods, a wrong secret (before the body is read), an
    unusual body (no Content-Length, beyond the limits) and any error, for which the
    body read is put back. So every refusal and error is Flask's, as before; only an
    accepted gossip skips the app's ``before_request``/``after_request`` functions and
    Flask's request signals (docs/security.md).
    """

    def __init__(self, wsgi_app: WSGIApplication, engine: Engine, app: Flask) -> None:
        self.wsgi_app, self.engine, self.config = wsgi_app, engine, app.config
        self.path = f"/{PREFIX}/gossip"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        engine, auth = self.engine, environ.get("HTTP_AUTHORIZATION")
        limit = engine.settings.max_body_bytes
        sender = f"a gossip request from {environ.get('REMOTE_ADDR')}"
        try:
            sent_limit = min(limit, self.config["MAX_CONTENT_LENGTH"] or limit)
            length = content_length(environ.get("CONTENT_LENGTH") or None, sent_limit)
            if length is None:
                raise BadMessage("no Content-Length")  # chunked: the app reads it
            engine.authorize(auth, False, sender)
        except ShazbotError:  # the app's route refuses it: 401 before a length's 400 or 413
            return self.wsgi_app(environ, start_response)
        raw = b""
        try:
            raw = environ["wsgi.input"].read(length)
            if len(raw) != length:
                raise BadMessage(HUNG_UP)  # the app's route says so
            inflated = inflate(raw, environ.get("HTTP_CONTENT_ENCODING"), limit)
            body = engine.answer_gossip(inflated, sender)
        except Exception:  # the app answers it (and reports it) as without this path
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.wsgi_app(environ, start_response)
        body, headers = reply_encoding(body, environ.get("HTTP_ACCEPT_ENCODING"))
        engine.stats.add(bytes_received=len(raw), bytes_sent=len(body))
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers,
                (INSTANCE_HEADER, engine.instance),
            ],
        )
        return [body]
