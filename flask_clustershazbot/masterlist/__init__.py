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

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..config import Settings, config_key
from ..errors import ShazbotError
from ..records import ServerList
from ..settings_values import mask
from .base import MasterList, NodeMasterList, file_path, merge_stored
from .dns import DnsMasterList
from .file import FileMasterList
from .http import HttpMasterList
from .redis import RedisMasterList
from .s3 import S3MasterList

if TYPE_CHECKING:
    from ..transport import HttpTransport

__all__ = [
    "DnsMasterList",
    "FileMasterList",
    "HttpMasterList",
    "MasterList",
    "MasterLists",
    "NodeMasterList",
    "RedisMasterList",
    "S3MasterList",
    "file_path",
    "merge_stored",
    "open_master_list",
]


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


class MasterLists(NodeMasterList):
    """The master list a node reads (``SHAZBOT_MASTER_LIST``) and the one it updates
    (``SHAZBOT_MASTER_LIST_UPDATE``), one object when both name one location; opened on
    first use, and afresh after a fork (a Redis pool is shared with the parent)."""

    def __init__(self, settings: Settings, transport: HttpTransport) -> None:
        self.settings = settings
        self.transport = transport
        self._opened: tuple[MasterList, MasterList] | None = None

    def _lists(self) -> tuple[MasterList, MasterList]:
        if self._opened is None:
            reader = open_master_list(self.settings, self.transport)
            # HTTP updates have their own setting, named in their errors.
            update = self.settings.master_list_update
            same = update == self.settings.master_list and not update.startswith("http")
            writer = reader if same else open_master_list(self.settings, self.transport, True)
            self._opened = (reader, writer)
        return self._opened

    def read(self) -> ServerList:
        return self._lists()[0].read()

    def publish(self, view: ServerList) -> None:
        self._lists()[1].publish(view)

    def close(self) -> None:
        for opened in set(self._opened or ()):
            opened.close()

    def reset_after_fork(self) -> None:
        self._opened = None
