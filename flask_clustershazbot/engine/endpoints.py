"""What the endpoints ask of the engine: who may ask, and the answers (gossip, probe,
list, control, health), independent of Flask."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._json import decode_json
from ..errors import BadMessage, Busy, NotStarted, Unauthorized
from ..incoming import Incoming, decode_gossip
from ..membership import Membership
from ..records import ServerList, base_url_problem
from .common import log

if TYPE_CHECKING:
    from .node import Engine

#: Seconds between two log lines about requests let in by an older secret of a rotation.
OLDER_SECRET_LOG_INTERVAL = 60.0
#: Indirect probes this node runs for other members at once; more are refused (503).
MAX_PROBES = 8


def check_secret(header: str | None, secrets: str | Sequence[str]) -> bool:
    """True if ``header`` carries one of ``secrets`` (:func:`secret_index`)."""
    return secret_index(header, secrets) >= 0


def secret_index(header: str | None, secrets: str | Sequence[str]) -> int:
    """Which of ``secrets`` ``header`` carries: 0 the current one, 1 and on the older ones
    still accepted during a rotation, -1 none. The original sends the bare secret;
    ``Bearer <secret>`` is accepted too. Constant time: each secret is compared, whichever
    matches."""
    value = (header or "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    found = -1
    for index, secret in enumerate((secrets,) if isinstance(secrets, str) else secrets):
        matched = hmac.compare_digest(value.encode(), secret.encode())
        found = index if matched and found < 0 else found
    return found


def parse_probe(body: Any) -> tuple[str, float | None]:
    """``{"message": "probe", "baseUrl": str, "timeout"?: seconds > 0}`` -> (baseUrl, timeout)."""
    if not isinstance(body, dict) or body.get("message") != "probe":
        raise BadMessage('a probe must be a JSON object with "message": "probe"')
    target, timeout = body.get("baseUrl"), body.get("timeout")
    if not isinstance(target, str):
        raise BadMessage("baseUrl must be a string")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 1e6
    ):
        raise BadMessage("timeout must be a number of seconds greater than 0")
    return target, None if timeout is None else float(timeout)


class Endpoints:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._older_secret_logged: float | None = None
        self._probes = threading.BoundedSemaphore(MAX_PROBES)

    def reset_after_fork(self) -> None:
        self._probes = threading.BoundedSemaphore(MAX_PROBES)

    def authorize(self, authorization: str | None, control: bool, sender: str) -> None:
        """Raise unless started and ``authorization`` carries the gossip (or control) secret."""
        e = self.engine
        if not e.started or e.passive:
            raise NotStarted(e.passive or "clustershazbot is not started")
        if not self.accepts(authorization, control, sender):
            raise Unauthorized(f"missing or wrong {'control' if control else 'gossip'} secret")

    def accepts(self, authorization: str | None, control: bool, sender: str) -> bool:
        """Whether ``authorization`` carries an accepted gossip (or control) secret. One of
        the older secrets of a rotation is counted, and logged at most once a minute
        (``sender``: where the request came from), so that whoever still sends it is found
        before it is dropped."""
        e = self.engine
        s = e.settings
        index = secret_index(
            authorization, s.accepted_control_secrets if control else s.accepted_secrets
        )
        if index > 0:
            kind = "control" if control else "gossip"
            e.stats.add(**{f"older_{kind}_secret_requests": 1})
            mono = e.monotonic()
            last = self._older_secret_logged
            if last is None or mono - last >= OLDER_SECRET_LOG_INTERVAL:
                self._older_secret_logged = mono
                log.warning(
                    "%s carried an older %s secret (number %d of SHAZBOT_%sSECRET), still "
                    "accepted: finish the rotation there before dropping it (%d so far; "
                    "further ones are counted for a minute without a log line)",
                    sender,
                    kind,
                    index + 1,
                    "CONTROL_" if control else "",
                    e.stats.snapshot()[f"older_{kind}_secret_requests"],
                )
        return index >= 0

    def answer_gossip(self, raw: bytes, sender: str) -> bytes:
        """The reply to a gossip request's JSON bytes, as JSON bytes: with msgspec, the
        records the table already holds cost no parsing in Python, and the reply is joined
        from the entries' cached bytes."""
        servers: Incoming | ServerList | None = decode_gossip(raw)
        if servers is None:
            servers = ServerList.from_dict(decode_json(raw, "the body"), message="gossip")
        return self.engine.table.merge_then(servers, True, Membership.gossip_body, sender)

    def answer_probe(self, body: Any) -> dict[str, Any]:
        """Another member asks this node to try one of its peers: ``{"reachable": bool}``.

        Only members this node knows (hence already allowed by SHAZBOT_ALLOWED_PEERS) are
        tried, within the asker's timeout and this node's request timeout, at most
        MAX_PROBES at once: the endpoint cannot be used to reach arbitrary addresses.
        """
        e = self.engine
        target, timeout = parse_probe(body)
        if base_url_problem(target) or not e.peer_policy.allows(target):
            raise BadMessage("baseUrl is not a valid, allowed base URL")
        if not e.table.transact(lambda m: target in m.entries):
            raise BadMessage("baseUrl is not a member known to this node")
        if target == e.settings.base_url:
            return {"reachable": True}
        if not self._probes.acquire(blocking=False):
            raise Busy("too many probes at once")
        try:
            limit = e.settings.request_timeout
            failure = e.rounds.attempt(target, quiet=True, timeout=min(timeout or limit, limit))
        finally:
            self._probes.release()
        return {"reachable": failure is None}

    def answer_list(self, authorization: str | None, sender: str) -> dict[str, Any]:
        """Our online list; offline too when the control secret is given."""
        e = self.engine
        if not e.started or e.passive:
            raise NotStarted(e.passive or "clustershazbot is not started")
        full = bool(authorization) and self.accepts(authorization, True, sender)
        return e.server_list(include_offline=full).to_dict(include_offline=full)

    def set_online(self, online: bool) -> None:
        """Take this node offline (sticky) or online again, and tell peers at once."""
        e = self.engine
        now, mono = e.clock(), e.monotonic()

        def op(m: Membership) -> list[str]:
            m.control_online = online
            m.heartbeat(now, mono, e.settings.max_clock_skew_ms)
            return e.discovery.announce_targets(m)

        targets = e.table.transact(op)
        log.info("control: this node is now %s", "online" if online else "offline")
        if e.live:
            # Told at once, to those a shutdown tells, not a round or more later (a drained
            # node should stop getting work now); on a thread of its own, so that the
            # answer to the control request waits for no peer (nor for a schedule, which
            # runs in one process of a gunicorn host only).
            threading.Thread(target=e.discovery.greet, args=(targets, True), daemon=True).start()

    def health(self) -> dict[str, Any]:
        """The original's health section, and ``{"status": "degraded", "reason": ...,
        "cluster": ...}`` while this node knows no peer online and cannot read the master
        list."""
        e = self.engine
        if e.passive:
            return {"status": "error", "error": e.passive}
        if not e.started:
            return {"status": "error", "error": "clustershazbot is not started"}
        error = e.identity.error
        if not e.live:
            return {
                "status": "error",
                "error": f"starting: {error}"
                if error
                else "starting: checking that SHAZBOT_BASE_URL "
                f"{e.settings.base_url} leads back to this node",
            }
        if error:
            return {"status": "error", "error": error}
        try:
            cluster = e.server_list().to_dict()
        except Exception as exc:
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        error = e.master_list_error
        if error and not any(s["baseUrl"] != e.settings.base_url for s in cluster["online"]):
            # Alone, and nothing to find the others with: it serves, but outside the cluster.
            reason = f"alone: no peer online, and the master list cannot be read ({error})"
            return {"status": "degraded", "reason": reason, "cluster": cluster}
        return {"status": "ok", "cluster": cluster}
