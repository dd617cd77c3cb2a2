"""A master list at an ``http(s)://`` URL: GET it; PUT it, with ``If-Match`` where the
server gives ETags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings
from ..records import ServerList
from .base import (
    Location,
    publish_conditionally,
)

if TYPE_CHECKING:
    from ..transport import HttpTransport


class HttpMasterList(Location):
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

        publish_conditionally(self, fetch, store, view)
