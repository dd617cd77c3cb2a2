"""The blueprint: ``/clustershazbot/gossip``, ``/list``, ``/control`` and ``/probe``. Defined at import time."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ._json import GZIP_MIN_BYTES, decode_json, encode_json, gzip_body
from .constants import EXTENSION_KEY, INSTANCE_HEADER, PREFIX
from .engine import Engine
from .errors import BadMessage, ShazbotError, TooLarge

blueprint = Blueprint("clustershazbot", __name__, url_prefix="/" + PREFIX)
#: Every path of the protocol starts with this.


def current_engine() -> Engine:
    """The engine of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def _json(data: Any, status: int = 200) -> Response:
    body = data if isinstance(data, bytes) else encode_json(data)  # bytes: encoded already
    # Compress only for a client that asked for it: seed nodes may not, and get plain JSON.
    gzipped = (
        len(body) >= GZIP_MIN_BYTES
        and "Accept-Encoding" in request.headers
        and request.accept_encodings["gzip"] > 0
    )
    response = current_app.response_class(
        gzip_body(body) if gzipped else body, status, mimetype="application/json"
    )
    response.headers["Vary"] = "Accept-Encoding"  # a new response: no other Vary to keep
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    return response


def read_body(limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes after gzip decompression."""
    return decode_json(read_raw(limit), "the body")


def read_raw(limit: int) -> bytes:
    """The request's body bytes, at most ``limit`` after gzip decompression."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise BadMessage("the body is not valid gzip") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise TooLarge(f"the body is larger than {limit} bytes after decompression")
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
    engine.authorize(auth, control=False)  # before reading: strangers cost no parsing
    return _json(engine.handle_gossip_body(auth, read_raw(engine.settings.max_body_bytes)))


@blueprint.get("/list")
def server_list() -> Response:
    return _json(current_engine().handle_list(request.headers.get("Authorization")))


def _posted(control: bool, handle: Callable[[Engine, str | None, Any], dict[str, Any]]) -> Response:
    """A JSON POST: the secret checked before the body is read (strangers cost no parsing)."""
    engine, auth = current_engine(), request.headers.get("Authorization")
    engine.authorize(auth, control=control)
    return _json(handle(engine, auth, read_body(engine.settings.max_body_bytes)))


@blueprint.post("/control")
def control() -> Response:
    return _posted(True, Engine.handle_control)


@blueprint.post("/probe")
def probe() -> Response:
    """Indirect probe (an extension; seed nodes answer 404): try a member for the asker."""
    return _posted(False, Engine.handle_probe)
