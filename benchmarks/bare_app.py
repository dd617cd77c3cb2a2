"""The floor of any Python gossip endpoint for the endpoint benchmark: a bare WSGI callable.

Served under the same gunicorn settings as our node, it reads the request body and answers
a small JSON reply, with no framework and no gossip work: what gunicorn alone costs per
request (issue 25).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

REPLY = b"{}"


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(REPLY)))]
    )
    return [REPLY]
