"""JSON codec: orjson when installed (several times faster on whole-state messages), else the
standard library. Both accept and produce the same documents, so a node behaves the same
whichever it has; ``CODEC`` says which one is in use.

msgspec, when installed, decodes gossip messages straight into typed records
(:func:`flask_clustershazbot.records.decode_gossip`); anything it refuses is decided by
the codec here, so that it changes speed only, never what is accepted.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from .errors import BadMessage

#: Gossip bodies from this size on are sent gzip-compressed. Nodes of the original take them: their
#: body parser (Express's) inflates a request whose Content-Encoding says gzip.
GZIP_MIN_BYTES = 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: orjson refuses them too


_decoder = json.JSONDecoder(parse_constant=_no_constant)
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def std_loads(data: bytes | str) -> Any:
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    return _decoder.decode(text)


def std_dumps(data: Any) -> bytes:
    try:
        return _encoder.encode(data).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only escaped it is valid UTF-8
        return _ascii_encoder.encode(data).encode("ascii")


try:
    import msgspec  # noqa: F401 - only whether it is installed
except ImportError:  # pragma: no cover - depends on the environment
    TYPED = False
else:
    #: msgspec decodes gossip messages into typed records (see the module's docstring).
    TYPED = True

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

if orjson is not None:
    CODEC = "orjson"

    def loads(data: bytes | str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson refuses some valid JSON the standard library takes (integers beyond
            # 64 bits, lone surrogates): let the standard library decide, so both agree.
            return std_loads(data)

    def dumps(data: Any) -> bytes:
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:  # integers beyond 64 bits, lone surrogates
            return std_dumps(data)

else:  # pragma: no cover - depends on the environment
    CODEC = "json"
    loads = std_loads
    dumps = std_dumps


def force_std() -> None:
    """Use the standard library even when faster codecs are installed (benchmarks)."""
    global CODEC, loads, dumps, TYPED
    CODEC, loads, dumps, TYPED = "json (forced)", std_loads, std_dumps, False


def decode_json(body: bytes, what: str) -> Any:
    """Parse JSON; anything that is not valid JSON is a :class:`BadMessage`."""
    try:
        return loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"{what} is not valid JSON ({type(exc).__name__})") from None


def encode_json(data: Any) -> bytes:
    return dumps(data)


def gzip_body(body: bytes) -> bytes:
    """Level 1: whole-state messages shrink about 14 times, at a third of level 6's cost."""
    return gzip.compress(body, compresslevel=1, mtime=0)
