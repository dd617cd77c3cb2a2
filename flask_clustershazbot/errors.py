"""The library's exceptions. Each carries the HTTP status its endpoint answers with."""

from __future__ import annotations


class ShazbotError(Exception):
    """Base class of every error this library raises on purpose."""

    status = 500


class ConfigError(ShazbotError):
    """A setting is missing or invalid; the message names it."""


class Unauthorized(ShazbotError):
    """The Authorization header does not carry the expected secret."""

    status = 401


class BadMessage(ShazbotError):
    """A message, reply or master list is malformed; the message says where."""

    status = 400


class TooLarge(BadMessage):
    """A body exceeds ``SHAZBOT_MAX_BODY_BYTES`` (counted after decompression)."""

    status = 413


class NotStarted(ShazbotError):
    """The engine has not been started (or has been shut down)."""

    status = 503


class Busy(ShazbotError):
    """This node runs as many indirect probes as it allows at once."""

    status = 503


class TransportError(ShazbotError):
    """A request could not be completed (connection, timeout, HTTP status)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        #: The connection was refused (nothing listens): strong evidence that the peer is down,
        #: unlike a timeout or a lost message.
        self.refused = refused
