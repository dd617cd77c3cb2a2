"""A master list in a Redis hash, one field per member, written by a server-side script."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._json import decode_json, encode_json
from ..config import Settings
from ..errors import BadMessage, TooLarge
from ..records import MAX_URL_LENGTH, GossipServer, ServerList
from .base import (
    Location,
    log,
    now_ms,
    window,
)

#: Redis key of the member hash when the URL names none (``?key=``).
DEFAULT_REDIS_KEY = "clustershazbot:members"
#: A Redis field (name or value) longer than this is not a record of ours (a base URL has
#: at most MAX_URL_LENGTH characters, a record about 90 more): it is never read, and the
#: next publish deletes it.
MAX_REDIS_FIELD_BYTES = 4 * MAX_URL_LENGTH

#: Keeps, per member, the record of highest merge rank (lastUpdate, offline, monitor), and
#: deletes every field that is not a usable record (see ``usable``) or whose stamp lies
#: outside the window kept. KEYS[1]: the hash; ARGV: the oldest and newest stamps kept,
#: the key's lifetime (ms), the longest field, then per record: baseUrl, lastUpdate,
#: offline (0/1), monitor (0/1), JSON. A script that fails is not rolled back, so every
#: decision is made before the first write. Returns {records written, fields deleted, of
#: which unusable}.
_REDIS_PUBLISH = """
local key = KEYS[1]
local oldest, newest, lifetime, longest = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])

-- A stored field's rank {lastUpdate, offline, monitor}; false for a record stamped outside
-- [oldest, newest] (a stamp beyond the clock guard would win every merge); nil for anything
-- this script does not write: too long (never fetched), not JSON, another shape, a
-- lastUpdate that is not an integer (cjson reads 1e3 and 1000.0 as numbers too: the text
-- must be digits, as a reader requires), a baseUrl that is not the field's name.
local function usable(field)
  if #field > longest or redis.call('HSTRLEN', key, field) > longest then return nil end
  local value = redis.call('HGET', key, field)
  local ok, r = pcall(cjson.decode, value)
  if not ok or type(r) ~= 'table' or r.baseUrl ~= field or type(r.monitor) ~= 'boolean'
    or type(r.online) ~= 'boolean' or type(r.lastUpdate) ~= 'number'
    or not string.find(value, '"lastUpdate"%s*:%s*%d+%s*[,}]') then
    return nil
  end
  if r.lastUpdate < oldest or r.lastUpdate > newest then return false end
  return {r.lastUpdate, r.online and 0 or 1, r.monitor and 1 or 0}
end

local writes, known, unusable = {}, {}, 0
for i = 5, #ARGV, 5 do
  local field, new = ARGV[i], {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
    tonumber(ARGV[i + 3])}
  local old = redis.call('HEXISTS', key, field) == 1 and usable(field)
  if old == nil then unusable = unusable + 1 end
  if not old or new[1] > old[1] or (new[1] == old[1] and (new[2] > old[2]
    or (new[2] == old[2] and new[3] > old[3]))) then
    writes[#writes + 1] = i
  end
  known[field] = true
end
local deletes = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if not known[field] then
    local old = usable(field)
    if not old then
      deletes[#deletes + 1] = field
      if old == nil then unusable = unusable + 1 end
    end
  end
end
for _, i in ipairs(writes) do redis.call('HSET', key, ARGV[i], ARGV[i + 4]) end
for _, field in ipairs(deletes) do redis.call('HDEL', key, field) end
redis.call('PEXPIRE', key, lifetime)
return {#writes, #deletes, unusable}
"""

#: The fields of the hash, within bounds: a field longer than the longest (ARGV[1]) is
#: skipped unread (HSTRLEN first); records adding up to more than ARGV[2] bytes are not
#: sent at all. Returns {fields skipped, field, value, field, value...}, or {-1}: too large.
_REDIS_READ = """
local key, longest, budget = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {0}
for _, field in ipairs(redis.call('HKEYS', key)) do
  local size = redis.call('HSTRLEN', key, field)
  if #field > longest or size > longest then
    out[1] = out[1] + 1
  else
    budget = budget - #field - size
    if budget < 0 then return {-1} end
    out[#out + 1] = field
    out[#out + 1] = redis.call('HGET', key, field)
  end
end
return out
"""


class RedisMasterList(Location):
    """A Redis hash: one field per member, value ``{baseUrl, monitor, lastUpdate, online}``.

    Each publish runs one script that keeps, per member, the newer record by the merge
    rule, so concurrent announcements cannot overwrite each other; offline records stay
    as tombstones; records older than the retention or beyond the clock guard, and fields
    that are not records of ours, are deleted.
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        query = parse_qs(parts.query)
        self.key = query.pop("key", [DEFAULT_REDIS_KEY])[0]
        try:
            import redis
        except ImportError:
            raise self.error("needs redis-py: pip install flask-clustershazbot[redis]") from None
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        url = parts._replace(query="&".join(f"{k}={v[0]}" for k, v in query.items())).geturl()
        timeout = settings.master_list_timeout
        try:
            self.client: Any = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise self.error(f"not a valid Redis URL ({exc})") from None
        self.publish_script = self.client.register_script(_REDIS_PUBLISH)
        self.read_script = self.client.register_script(_REDIS_READ)

    def read(self) -> ServerList:
        """The records of the hash, read within ``max_body_bytes`` (as the other backends
        read a list): a longer field is skipped without being read, a hash whose records
        add up to more is refused (:class:`TooLarge`) without being read."""
        args = [MAX_REDIS_FIELD_BYTES, self.settings.max_body_bytes]
        try:
            reply = self.read_script(keys=[self.key], args=args)
        except self._errors as exc:
            raise self.error(f"read script failed: {type(exc).__name__}") from None
        if reply[0] < 0:
            raise TooLarge(f"{self.where} is larger than the body limit")
        skipped = reply[0]
        online: list[GossipServer] = []
        offline: list[GossipServer] = []
        newest = window(now_ms(), self.settings)[1]
        for field, value in zip(reply[1::2], reply[2::2], strict=True):
            try:
                data = decode_json(value, f"a record of {self.where}")
                server = GossipServer.from_dict(data, f"{self.where} record")
            except BadMessage:
                skipped += 1  # one foreign field must not hide every member
                continue
            # Only what the publish script keeps (see ``usable`` there): it drops the rest.
            if data.get("baseUrl") != field.decode("utf-8", "replace") or not isinstance(
                data.get("online"), bool
            ):
                skipped += 1
            elif server.last_update <= newest:  # beyond the clock guard: the publish drops it
                (online if data["online"] else offline).append(server)
        if skipped:
            log.warning("%s: skipped %d unusable record(s)", self.where, skipped)
        return ServerList(tuple(online), tuple(offline))

    def publish(self, view: ServerList) -> None:
        oldest, newest = window(now_ms(), self.settings)
        args: list[Any] = [oldest, newest, self.settings.retention_ms, MAX_REDIS_FIELD_BYTES]
        for servers, online in ((view.online, True), (view.offline, False)):
            for s in servers:
                if not oldest <= s.last_update <= newest:
                    continue  # the script would delete it at once, as merge_stored drops it
                record = {**s.to_dict(), "online": online}
                args += [
                    s.base_url,
                    s.last_update,
                    int(not online),
                    int(s.monitor),
                    encode_json(record),
                ]
        try:
            _, _, unusable = self.publish_script(keys=[self.key], args=args)
        except self._errors as exc:
            raise self.error(f"publish script failed: {type(exc).__name__}") from None
        if unusable:
            log.warning("%s: dropped %d unusable record(s) on this update", self.where, unusable)

    def close(self) -> None:
        self.client.close()
