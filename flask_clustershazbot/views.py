"""The blueprint: ``/clustershazbot/gossip``, ``/list``, ``/control`` and ``/probe``. Defined at import time."""

from __future__ import annotations

import zlib
from typing import Any

from flask import Blueprint, Response, current_app, request

from .engine import Engine
from .errors import BadMessage, ShazbotError, TooLarge
from .transport import GZIP_MIN_BYTES, decode_json, encode_json, gzip_body

blueprint = Blueprint("clustershazbot", __name__, url_prefix="/clustershazbot")


def current_engine() -> Engine:
    """The engine of the app handling the current request."""
    return current_app.extensions["clustershazbot"]  # type: ignore[no-any-return]


def _json(data: Any, status: int = 200) -> Response:
    body = encode_json(data)
    # Compress only for a client that asked for it: seed nodes may not, and get plain JSON.
    gzipped = len(body) >= GZIP_MIN_BYTES and request.accept_encodings["gzip"] > 0
    response = current_app.response_class(
        gzip_body(body) if gzipped else body, status, mimetype="application/json"
    )
    response.vary.add("Accept-Encoding")
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    return response


def read_body(limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes after gzip decompression."""
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
    return decode_json(raw, "the body")


@blueprint.after_request
def _count_bytes(response: Response) -> Response:
    """Body bytes of the requests this node answers, for its stats (see metrics.py)."""
    current_engine().stats.add(
        bytes_received=request.content_length or 0, bytes_sent=response.content_length or 0
    )
    return response


@blueprint.errorhandler(ShazbotError)
def _error(exc: ShazbotError) -> Response:
    return _json({"error": str(exc)}, exc.status)


@blueprint.post("/gossip")
def gossip() -> Response:
    engine, auth = current_engine(), request.headers.get("Authorization")
    engine.authorize(auth, control=False)  # before reading: strangers cost no parsing
    body = read_body(engine.settings.max_body_bytes)
    return _json(engine.handle_gossip(auth, body))


@blueprint.get("/list")
def server_list() -> Response:
    return _json(current_engine().handle_list(request.headers.get("Authorization")))


@blueprint.post("/control")
def control() -> Response:
    engine, auth = current_engine(), request.headers.get("Authorization")
    engine.authorize(auth, control=True)
    body = read_body(engine.settings.max_body_bytes)
    return _json(engine.handle_control(auth, body))


@blueprint.post("/probe")
def probe() -> Response:
    """Indirect probe (an extension; seed nodes answer 404): try a member for the asker."""
    engine, auth = current_engine(), request.headers.get("Authorization")
    engine.authorize(auth, control=False)
    body = read_body(engine.settings.max_body_bytes)
    return _json(engine.handle_probe(auth, body))
