"""The protocol's behaviour, independent of Flask.

Clock, monotonic clock, random source, transport, store and scheduler are all
injectable, so that a simulator can run many engines in virtual time with this
very code. Network I/O never happens while the store is held, and listeners
run after it is released.
"""

from __future__ import annotations

import hmac
import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ._json import decode_json
from .awareness import Awareness
from .config import Settings, mask
from .errors import BadMessage, Busy, NotStarted, ShazbotError, Unauthorized
from .membership import Changes, Entry, Membership
from .peers import PeerPolicy, open_master_list_warning, weak_secret_warnings
from .records import (
    Incoming,
    ServerList,
    base_url_problem,
    canonical_base_url,
    decode_gossip,
    parse_control,
)
from .rtt import RoundTrips
from .scheduling import Scheduler
from .stats import Stats
from .store import MemoryStore, Store
from .transport import Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Peers that a bootstrap or shutdown announcement reaches, besides every monitor.
ANNOUNCE_FANOUT = 20
#: Chance that a round picks among monitors only (they act as hubs).
MONITOR_PREFERENCE = 0.5
#: Chance that a round also probes one offline peer, so that a healed partition rejoins.
OFFLINE_PROBE = 0.1
#: Rounds allowed to wait on slow peers at once; more are skipped, not queued.
MAX_ROUNDS_IN_FLIGHT = 3
#: Bootstrap retries after a failed master-list download wait 1, 2, 4 ... s, at most this.
MAX_BOOTSTRAP_BACKOFF = 60.0
#: Two attempts that each waited out the request timeout end the retries early (the original's
#: rule): a peer that leaves requests hanging is unfit to serve, whatever the cause.
SLOW_FAILURES = 2
#: ... once the peer has been silent, since the first of them, for this share of the
#: request timeout: a pause shorter than that (a gunicorn worker being replaced, a GC) is
#: not a hang.
HANG_SILENCE = 0.9
#: A starting node checks every this many seconds that its base URL leads back to it ...
SELF_CHECK_EVERY = 0.25
#: ... and after this many seconds without an answer acts as the node anyway, with a warning
#: (nothing listens yet, or a network that cannot reach its own address).
SELF_CHECK_PATIENCE = 30.0
#: A refused connection within this many seconds of the start, before any check succeeded,
#: is the server not listening yet (it binds after loading the app): retried, not a failure.
SELF_CHECK_GRACE = 2.0
#: This many refutations within CONFLICT_WINDOW_ROUNDS gossip intervals (at least a minute)
#: hint that another process claims this node's base URL, or that peers cannot reach it;
#: a node acting as the node also checks every CONFLICT_WINDOW_ROUNDS intervals anyway.
CONFLICT_HINTS = 3
CONFLICT_WINDOW_ROUNDS = 10
#: A node missing from the master list checks again after at most this many seconds
#: (doubling up to SHAZBOT_MASTER_ANNOUNCE_MINIMUM), until it sees itself listed.
FIRST_LISTING_CHECK = 5.0
MAX_LISTING_CHECKS = 8
#: Bytes of a whole-table message besides its records; the rest of SHAZBOT_MAX_BODY_BYTES
#: is the member table's byte budget, so that every reply fits what peers accept.
REPLY_ENVELOPE = 128
#: Seconds between two log lines about the member cap (it is counted every time).
CAP_LOG_INTERVAL = 60.0
#: Seconds between two log lines about requests let in by an older secret of a rotation.
OLDER_SECRET_LOG_INTERVAL = 60.0
#: Indirect probes this node runs for other members at once; more are refused (503).
MAX_PROBES = 8
#: Seconds between two log lines about the invalid records of one sender (each is counted).
SKIP_LOG_INTERVAL = 60.0
#: Senders whose last such log line is remembered; the oldest is forgotten beyond this.
MAX_SKIP_SENDERS = 1024


@dataclass(frozen=True)
class Failure:
    """The evidence of one failed direct exchange."""

    #: The connection was refused: nothing listens (strong evidence of a crash).
    refused: bool
    #: The attempt waited out its timeout (a hung or paused peer, or a slow network).
    slow: bool
    #: The timeout the attempt had, in seconds (helpers get the same).
    timeout: float
    #: Monotonic time at which the attempt began (retries are spaced from there).
    started: float
    #: Wall-clock ms at which the attempt began: the evidence time of a verdict.
    began: int = 0


@dataclass
class Suspicion:
    """The judgement of one peer, from its first failed exchange to a verdict or its end."""

    base_url: str
    #: Wall-clock ms when the first failed attempt began. A verdict is stamped no later
    #: (it says "silent since then"), so any heartbeat the peer issued after it wins
    #: over the verdict wherever it is known, and it proves the peer alive (see
    #: :meth:`Engine._heard_from`).
    began: int
    #: The peer's record as known when the judgement began.
    known: int
    failed: int = 0
    slow: int = 0
    #: Monotonic time of the first attempt that waited out its timeout: the hang silence
    #: counts from there.
    since: float | None = None
    #: How long the next attempt, and the helpers, wait: twice the last attempt's timeout
    #: when it was waited out (the judgement's own backoff; the node's estimate also
    #: grows with the probes it runs for others, which would stretch a verdict).
    wait: float = 0.0
    #: Whether news of the peer (see :meth:`Engine._news`) had come when the helpers last
    #: answered: only such news can their "could not reach it" outweigh.
    news_when_asked: bool = False


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _reports_itself(servers: ServerList | Incoming, url: str, horizon: int) -> bool | None:
    """Whether a reply from the hint ``url`` reports ``url`` online: True with a record this
    node accepts, False with none (it answered as another member), None when its only such
    record is stamped beyond the clock guard (its clock is ahead: no answer either way).
    Read from the whole reply, before the records that could not change the table are left
    out: the hint's own stamp (the master list's) may be newer than the peer's heartbeat."""
    beyond = False
    for record in servers.online:
        if record.base_url != url:
            try:
                if canonical_base_url(record.base_url) != url:
                    continue
            except ValueError:
                continue
        if record.last_update <= horizon:
            return True
        beyond = True
    return None if beyond else False


def _why(exc: BaseException) -> str:
    """An error for a log line: our own errors say what failed; others also need their type."""
    return str(exc) if isinstance(exc, ShazbotError) else mask(f"{type(exc).__name__}: {exc}")


def _failed(what: str, exc: BaseException) -> str:
    """``<what> failed: <why>``, naming ``what`` once: the transport's errors begin with it."""
    return f"{what} failed: {_why(exc).removeprefix(what + ': ')}"


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


class Engine:
    """One node of the cluster."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport,
        scheduler: Scheduler,
        store: Store | None = None,
        stats: Stats | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        listener: Callable[[Changes], None] | None = None,
        announces_shutdown: bool = True,
        instance: str | None = None,
        wait_for_self_check: bool = False,
    ) -> None:
        self.settings = settings
        #: The token this node's endpoints answer with (``X-Clustershazbot-Instance``), shared
        #: by the processes of one gunicorn host. The self-check compares it with the answer
        #: of our own base URL; None: no self-check (simulated or foreign-framework engines).
        self.instance = instance if instance is not None else secrets.token_hex(8)
        self.self_check = instance is not None and settings.self_check
        #: Act as the node only once the self-check found this process at the base URL (or
        #: gave up waiting): a process that loads the app without serving it stays passive.
        self.wait_for_self_check = wait_for_self_check and self.self_check
        #: False in a gunicorn worker: the host's shutdown is announced once, by the master.
        self.announces_shutdown = announces_shutdown
        #: Asked at shutdown: why the host goes on without this process (a uWSGI worker
        #: recycled, a master replaced by a binary upgrade), which then announces nothing.
        self.host_goes_on: Callable[[], str | None] = lambda: None
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.store: Store = store or MemoryStore(
            Membership(settings.base_url, settings.monitor, clock(), monotonic())
        )
        #: Counters for operators (see metrics.py); the transport adds its byte counts.
        self.stats = stats or Stats()
        self.transport = transport
        self.scheduler = scheduler
        self.listener = listener
        #: SHAZBOT_ALLOWED_PEERS, applied to every record before it is merged.
        self.peer_policy = PeerPolicy(settings.allowed_peers, settings.base_url)
        #: start() was called and shutdown() was not.
        self.started = False
        #: This process acts as the node: it went online and runs the protocol.
        self.live = False
        #: Why this process never acts as the node (another process serves its base URL).
        self.passive: str | None = None
        #: Why the last self-check failed, or None.
        self.self_check_error: str | None = None
        self._check_began = 0.0
        #: A self-check has found this process at the base URL since start().
        self._self_checked = False
        #: Monotonic time of the last self-check while acting as the node.
        self._last_self_check = 0.0
        self._refutations: deque[float] = deque(maxlen=CONFLICT_HINTS)
        self._lifecycle = threading.RLock()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        #: The judgements under way, one per peer at a time.
        self._suspects: dict[str, Suspicion] = {}
        #: This node's own health: a node in trouble waits longer before it accuses a peer.
        self.awareness = Awareness()
        #: The staleness timeout of the last round: failures within it count against health.
        self._failure_timeout = settings.failure_timeout_for(1)
        #: Monotonic time the next round is due (a round that runs late says this node is slow).
        self._round_due: float | None = None
        self._round_delay = settings.gossip_interval
        #: Round-trip estimates behind the adaptive gossip timeout (rtt.py).
        self.round_trips = RoundTrips(settings.min_request_timeout, settings.request_timeout)
        self._probes = threading.BoundedSemaphore(MAX_PROBES)
        #: The rest of this pass over the online peers, in random order, and every peer the
        #: pass has taken in (see _next_target).
        self._pass: list[str] = []
        self._in_pass: set[str] = set()
        self._bootstrap_failures = 0
        self._warned_future: set[str] = set()
        #: Monotonic time of the last log line about each sender's invalid records.
        self._skips_logged: dict[str, float] = {}
        self._cap_logged: float | None = None
        self._older_secret_logged: float | None = None
        self._last_round_mono: float | None = None
        #: Wall-clock ms of the last completed round and master-list sync (for operators).
        self.last_round: int | None = None
        self.last_master_sync: int | None = None
        #: Why the last master-list download failed, or None if it succeeded.
        self.master_list_error: str | None = None
        #: Called whenever this process (re)creates its schedules (singleton jobs arm here).
        self.schedule_hooks: list[Callable[[], None]] = []

    # -- state helpers -----------------------------------------------------

    def _transact(self, fn: Callable[[Membership], T]) -> T:
        return self.store.transact(fn)

    def _publish(self, changes: Changes) -> None:
        """Log and hand on transitions; runs with the store released."""
        for url in changes.future:
            if url not in self._warned_future:
                self._warned_future.add(url)
                log.warning(
                    "ignoring records of %s stamped too far in the future (clock skew?)", url
                )
        node = {"node": self.settings.base_url}
        for server in changes.joined:
            log.info("peer online: %s", server.base_url, extra=node)
        for server in changes.left:
            log.info("peer offline: %s", server.base_url, extra=node)
        for server in changes.purged:
            log.info("peer purged: %s", server.base_url)
        if changes.refuted:
            self._note_refutation()
        if changes.refused or changes.evicted:
            self._count_member_cap(changes)
        if changes and self.listener is not None:
            try:
                self.listener(changes)
            except Exception:
                log.exception("a membership listener failed")

    def _count_member_cap(self, changes: Changes) -> None:
        """Count records refused or evicted by the member cap; log it at most once a minute."""
        self.stats.add(members_refused=changes.refused, members_evicted=changes.evicted)
        mono = self.monotonic()
        if self._cap_logged is None or mono - self._cap_logged >= CAP_LOG_INTERVAL:
            self._cap_logged = mono
            s = self.stats.snapshot()
            log.warning(
                "member table full (SHAZBOT_MAX_MEMBERS=%d, SHAZBOT_MAX_BODY_BYTES=%d): "
                "%d records refused and %d offline records evicted so far",
                self.settings.max_members,
                self.settings.max_body_bytes,
                s["members_refused"],
                s["members_evicted"],
            )

    def _merge(
        self,
        servers: ServerList,
        heartbeat: bool = False,
        sender: str = "a peer",
        hints: bool = False,
        answered: str | None = None,
    ) -> dict[str, Any]:
        """Merge ``servers`` and return our whole state as a GossipMessage."""
        return self._merge_then(
            servers, heartbeat, Membership.gossip_message, sender, hints, answered
        )

    def _merge_then(
        self,
        servers: ServerList | Incoming,
        heartbeat: bool,
        reply: Callable[[Membership], T],
        sender: str,
        hints: bool = False,
        answered: str | None = None,
    ) -> T:
        """Merge ``servers`` and return ``reply`` of the table (our whole state).

        ``sender`` names where they came from, for the log line about invalid records;
        ``hints``: from the master list (:meth:`Membership.merge`); ``answered``: the peer
        whose reply they are, which settles it if it is a hint (:meth:`Membership.settle_hint`).
        """
        if isinstance(servers, ServerList):
            servers = self.peer_policy.filter(servers)
        now, mono, s = self.clock(), self.monotonic(), self.settings
        skew = s.max_clock_skew_ms
        parsed: list[ServerList] = []

        def op(m: Membership) -> tuple[Changes, T]:
            if isinstance(servers, ServerList):
                fresh = servers
            else:  # validated against the table: only records that could change it
                fresh = self.peer_policy.filter(servers.news(m.entries))
            parsed.append(fresh)
            if heartbeat:
                m.heartbeat(now, mono, skew)
            changes = m.merge(
                fresh,
                now,
                mono,
                skew,
                s.retention_ms,
                s.max_members,
                s.max_body_bytes - REPLY_ENVELOPE,
                hints,
            )
            entry = m.entries.get(answered) if answered else None
            if answered and entry is not None and entry.hint:
                reported = _reports_itself(servers, answered, now + skew)
                if reported is not None:
                    changes.extend(m.settle_hint(answered, reported, mono))
            return changes, reply(m)

        started = time.perf_counter()
        changes, state = self._transact(op)
        if servers.online or servers.offline:
            self.stats.add(merges=1, merge_seconds=time.perf_counter() - started)
        if parsed and parsed[-1].skipped:
            self._count_skipped(parsed[-1], sender)
        self._publish(changes)
        return state

    def _count_skipped(self, servers: ServerList, sender: str) -> None:
        """Count the invalid records left out of ``servers``; log it at most once a minute
        per sender, with the first one's field and problem."""
        self.stats.add(records_refused=servers.skipped)
        mono, logged = self.monotonic(), self._skips_logged
        last = logged.pop(sender, None)  # re-inserted last: the dict stays in age order
        if last is not None and mono - last < SKIP_LOG_INTERVAL:
            logged[sender] = last
            return
        if len(logged) >= MAX_SKIP_SENDERS:
            del logged[next(iter(logged))]
        logged[sender] = mono
        log.warning(
            "skipped %d invalid record(s) from %s, merged the rest (first: %s); "
            "further ones from it are counted for a minute without a log line",
            servers.skipped,
            sender,
            servers.problem,
        )

    def _state(self) -> dict[str, Any]:
        """Our whole state as a GossipMessage, after a heartbeat."""
        return self._merge(ServerList(), heartbeat=True)

    def server_list(self, include_offline: bool = True) -> ServerList:
        return self._transact(lambda m: m.server_list(include_offline))

    def merge(self, servers: ServerList) -> None:
        """Merge records as if a peer had sent them (listeners and signals fire as usual)."""
        self._merge(servers)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Go online and schedule bootstrap, rounds and announcements. Returns at once.

        With ``wait_for_self_check``, going online waits until the self-check finds this
        process at the base URL (see :meth:`_self_check_job`).
        """
        with self._lifecycle:
            if self.started:
                return
            self.started = True
            self._check_began = self.monotonic()
            self._self_checked = False
            s = self.settings
            for problem in weak_secret_warnings(s.accepted_secrets, s.accepted_control_secrets):
                log.warning("weak secret: %s", problem)
            risk = open_master_list_warning(self.settings.allowed_peers, self.settings.master_list)
            if risk:
                log.warning("%s", risk)
            if self.wait_for_self_check:
                self.scheduler.start()
                self.scheduler.after(0, self._self_check_job)
                log.info(
                    "starting as %s once that URL leads back to this process",
                    self.settings.base_url,
                )
            else:
                self._go_live()

    def _go_live(self) -> None:
        """Go online and run the protocol. Called with ``_lifecycle`` held."""
        if not self.started or self.live or self.passive:
            return
        now, mono = self.clock(), self.monotonic()

        def go_online(m: Membership) -> None:
            m.running = True
            m.heartbeat(now, mono, self.settings.max_clock_skew_ms)

        self._transact(go_online)
        self.live = True
        self._last_round_mono = None
        self._last_self_check = mono
        self._schedule()
        log.info("started as %s", self.settings.base_url)

    def run_schedules(self) -> None:
        """(Re)create the schedules; a LeaderJobs scheduler calls this when its process is elected."""
        with self._lifecycle:
            if self.live:
                self._last_round_mono = None
                self._schedule()
            elif self.started and not self.passive:
                self.scheduler.after(0, self._self_check_job)

    def _schedule(self) -> None:
        with self._in_flight_lock:
            self._suspects.clear()  # retries of a stopped scheduler never run
        self.scheduler.start()
        self.scheduler.after(0, self.bootstrap)
        if self.self_check and not self.wait_for_self_check:
            self.scheduler.after(0, self._self_check_job)  # a diagnosis only
        self._schedule_round()
        self._schedule_announcement()
        for hook in self.schedule_hooks:
            hook()

    def shutdown(self) -> None:
        """Go offline, tell up to 20 peers and every monitor, optionally update the master list.

        Never raises: whatever fails is logged, and the rest of the shutdown still runs.
        """
        with self._lifecycle:
            if not self.started:
                return
            self.started = False
            live, self.live = self.live, False
            self.scheduler.shutdown()
            if not live:
                log.info("stopped (this process never acted as %s)", self.settings.base_url)
                return
            stays = "this worker stopped" if not self.announces_shutdown else self.host_goes_on()
            if stays:
                log.info("%s; the host stays online", stays)
                return
            now, mono = self.clock(), self.monotonic()

            def go_offline(m: Membership) -> tuple[dict[str, Any], list[str]] | None:
                if not m.running:  # another process of this host announced it already
                    return None
                m.running = False
                m.heartbeat(now, mono, self.settings.max_clock_skew_ms)
                return m.gossip_message(), self._announce_targets(m)

            announcement = self._transact(go_offline)
            if announcement is None:
                log.info("stopped; another process of this host announced its shutdown")
                return
            message, targets = announcement
            try:
                self.transport.gossip_many(targets, message)
            except Exception:  # never skip the upload, never raise to the caller (atexit)
                self.stats.add(gossip_failures=1)
                log.exception("the shutdown announcement failed")
            if self.settings.update_master_list_on_shutdown:
                self._upload_master_list()
            log.info("shut down")

    def crash(self) -> None:
        """Stop at once without a word, as a killed process would: for tests and simulators."""
        with self._lifecycle:
            self.started = self.live = False
            self.scheduler.shutdown()

    # -- self-check and identity -----------------------------------------------

    def _self_check_job(self) -> None:
        """Check that our base URL leads back to this process (or its gunicorn host).

        Answered with our instance token: this process is the node. Answered by another
        clustershazbot process: that one is the node, and this process stays passive (a
        script, a worker or a reloader parent that loaded the app). No answer: keep trying
        for SELF_CHECK_PATIENCE seconds, then act as the node anyway, with a warning.
        """
        if not self.started or self.passive:
            return
        url = self.settings.base_url
        refused = False
        try:
            answer = self.transport.identify(url)
        except Exception as exc:  # a TransportError, or anything from below: never fatal
            answer, problem = None, _why(exc)
            refused = bool(getattr(exc, "refused", False))
        else:
            problem = "the answer is not from a clustershazbot node" if answer is None else ""
        if answer == self.instance:
            if self.self_check_error:
                log.info("SHAZBOT_BASE_URL %s now leads back to this node", url)
            self.self_check_error = None
            self._self_checked = True
            with self._lifecycle:
                self._go_live()
            return
        if answer is not None:
            self._become_passive(
                f"SHAZBOT_BASE_URL {url} is served by another process; this one stays passive "
                "(it loaded the app without serving it: a script, a worker, a reloader parent, "
                "or a second host with the same base URL)"
            )
            return
        waited = self.monotonic() - self._check_began
        if refused and not self._self_checked and waited < SELF_CHECK_GRACE:
            self.scheduler.after(SELF_CHECK_EVERY, self._self_check_job)  # not listening yet
            return
        first = self.self_check_error is None
        self.self_check_error = (
            f"SHAZBOT_BASE_URL {url} does not lead back to this node ({problem})"
        )
        self.stats.add(self_check_failures=1)
        if self.live:
            if first:
                log.warning("%s; peers cannot reach it there", self.self_check_error)
        elif waited < SELF_CHECK_PATIENCE:
            if first:  # a wrong port or host: said at once, not after the patience
                log.warning(
                    "%s; checking until %g s after the start, then acting as the node anyway",
                    self.self_check_error,
                    SELF_CHECK_PATIENCE,
                )
            self.scheduler.after(SELF_CHECK_EVERY, self._self_check_job)
        else:
            log.warning(
                "%s after %g s; acting as the node anyway",
                self.self_check_error,
                SELF_CHECK_PATIENCE,
            )
            with self._lifecycle:
                self._go_live()

    def _become_passive(self, reason: str) -> None:
        """Stop acting as the node for good: no schedules, no shutdown announcement."""
        with self._lifecycle:
            if self.passive:
                return
            self.passive = reason
            was_live, self.live = self.live, False
            self.scheduler.shutdown()
        if was_live:
            self.stats.add(identity_conflicts=1)
            log.error("identity conflict: %s", reason)
        else:
            log.warning("%s", reason)

    def _note_refutation(self) -> None:
        """Refuting over and over means another process stamps our record, or peers keep
        finding our base URL unreachable: let the self-check say which."""
        mono = self.monotonic()
        self.awareness.apply(1)  # peers believe this node offline: it may be slow to answer
        hints = self._refutations
        hints.append(mono)
        window = max(60.0, CONFLICT_WINDOW_ROUNDS * self.settings.gossip_interval)
        if len(hints) == CONFLICT_HINTS and mono - hints[0] <= window:
            hints.clear()
            log.warning(
                "this node refuted records about itself %d times in %.0f s: another process "
                "may claim SHAZBOT_BASE_URL %s, or peers cannot reach it; checking",
                CONFLICT_HINTS,
                window,
                self.settings.base_url,
            )
            if self.self_check and self.live:
                self.scheduler.after(0, self._self_check_job)

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, connections and scheduler; rerun the schedules."""
        self._lifecycle = threading.RLock()
        self._in_flight_lock = threading.Lock()
        self._in_flight = 0
        self._probes = threading.BoundedSemaphore(MAX_PROBES)
        self.stats.reset_after_fork()
        self.store.reset_after_fork()
        self.transport.reset_after_fork()
        self.scheduler.reset_after_fork()
        self.awareness.reset_after_fork()
        if self.started:
            self.scheduler.start()
            self.run_schedules()

    # -- bootstrap and announcement ------------------------------------------

    def _announce_targets(self, m: Membership, hints: bool = False) -> list[str]:
        """Up to ANNOUNCE_FANOUT random online peers and every monitor (``hints``: hints
        too, as a bootstrap meets the members the master list names)."""
        peers = m.peers(online=True, hints=hints)
        chosen = self.rng.sample(peers, min(ANNOUNCE_FANOUT, len(peers)))
        monitors = [p for p in peers if p.monitor]
        return list(dict.fromkeys(p.base_url for p in chosen + monitors))

    def bootstrap(self) -> None:
        """Download and merge the master list, then announce ourselves to peers, and to the
        master list if it does not list us yet (a cold start: nobody would find us otherwise
        until the first announcement, 5 to 15 minutes away by default)."""
        if not self.live:
            return
        listed = self._sync_master_list()
        if isinstance(listed, Exception):  # whatever failed, the bootstrap is retried
            delay = min(2.0**self._bootstrap_failures, MAX_BOOTSTRAP_BACKOFF)
            self._bootstrap_failures += 1
            log.warning("master list download failed (%s); retrying in %g s", _why(listed), delay)
            if isinstance(listed, BadMessage):
                self._upload_master_list()  # which drops the bad records: the retry can read it
            self.scheduler.after(delay, self.bootstrap)
            return
        self._bootstrap_failures = 0
        self.last_master_sync = self.clock()
        if not self._greet(self._transact(lambda m: self._announce_targets(m, hints=True))):
            return
        if not self._listed(listed):
            self._claim_listing(0)

    def _greet(self, targets: list[str], quiet: bool = False) -> bool:
        """Send our state to ``targets`` at once and merge their replies; False if that
        could not be done at all (logged). A failed exchange is logged unless ``quiet``."""
        if not targets:  # nobody to tell: no heartbeat either (a node alone stays as it is)
            return True
        try:
            replies = self.transport.gossip_many(targets, self._state())
        except Exception:
            self.stats.add(gossip_failures=1)
            log.exception("telling peers at once failed; gossip rounds carry on")
            return False
        for url, reply in replies.items():
            if isinstance(reply, ServerList):
                self._merge_quietly(reply, url)
            elif not quiet:
                self.stats.add(gossip_failures=1)
                log.warning("bootstrap %s", _failed(f"gossip with {url}", reply))
        return True

    def _listed(self, servers: ServerList) -> bool:
        return any(s.base_url == self.settings.base_url for s in servers.online)

    def _claim_listing(self, checks: int) -> None:
        """Upload our online list now, and look again soon: another node's write at the
        same moment may have replaced ours (a master list without conditional writes)."""
        self._upload_master_list()
        if checks < MAX_LISTING_CHECKS:
            s = self.settings
            delay = min(FIRST_LISTING_CHECK, s.gossip_interval) * 2**checks
            delay = min(delay, max(s.master_announce_minimum, FIRST_LISTING_CHECK))
            self.scheduler.after(
                delay * self.rng.uniform(1.0, 1.5), lambda: self._check_listing(checks + 1)
            )

    def _check_listing(self, checks: int) -> None:
        if not self.live:
            return
        listed = self._sync_master_list()
        if isinstance(listed, Exception):
            log.warning("master list download failed: %s", _why(listed))
            listed = ServerList()
        if not self._listed(listed):
            self._claim_listing(checks)

    def _schedule_announcement(self) -> None:
        s = self.settings
        delay = s.master_announce_minimum + self.rng.uniform(0, s.master_announce_interval)
        self.scheduler.after(delay, self._announcement_job)

    def _announcement_job(self) -> None:
        if not self.live:
            return
        self._schedule_announcement()
        if self.self_check_error:
            self._self_check_job()
        self.announce()

    def announce(self) -> None:
        """Download and merge the master list, then upload our online list."""
        listed = self._sync_master_list()
        if isinstance(listed, Exception):
            log.warning("master list download failed: %s", _why(listed))
            if not isinstance(listed, BadMessage):
                return  # a list with bad records is still updated: the update drops them
        if self._upload_master_list():
            self.last_master_sync = self.clock()

    def _sync_master_list(self) -> ServerList | Exception:
        """Download and merge the master list: the list, or (counted) why that failed."""
        try:
            listed = self.transport.read_master_list()
            self._merge(listed, sender="the master list", hints=True)
        except Exception as exc:  # a ShazbotError, or anything from below: never fatal
            self.stats.add(master_list_failures=1)
            self.master_list_error = _why(exc)
            return exc
        self.master_list_error = None
        return listed

    def _upload_master_list(self) -> bool:
        try:
            self.transport.write_master_list(self.server_list(include_offline=True))
        except Exception as exc:
            self.stats.add(master_list_failures=1)
            log.warning("master list update failed: %s", _why(exc))
            return False
        return True

    # -- gossip rounds -------------------------------------------------------

    def _schedule_round(self) -> None:
        # A node in trouble (its score: late rounds, helpers that did not answer, stalls)
        # gossips less often (Lifeguard's LHA-Probe): an overloaded process that kept its
        # pace would pile up requests that time out, and judgements of peers that are only
        # waiting on it, until the load itself made every exchange fail.
        self._round_delay = (
            self.settings.gossip_interval * self.rng.uniform(0.9, 1.1) * (1 + self.awareness.score)
        )
        self._round_due = self.monotonic() + self._round_delay
        self.scheduler.after(self._round_delay, self._round_job)

    def _round_job(self) -> None:
        if not self.live:
            return
        due = self._round_due
        if due is not None and self.monotonic() - due > self.settings.gossip_interval / 2:
            self.awareness.apply(1)  # this process could not run a job on time: it is slow
        self._schedule_round()  # first, so that a slow peer never delays the next round
        with self._in_flight_lock:
            if self._in_flight >= MAX_ROUNDS_IN_FLIGHT:
                log.debug("skipping a round: %d rounds wait on slow peers", self._in_flight)
                return
            self._in_flight += 1
        try:
            self.gossip_round()
        except Exception:
            log.exception("gossip round failed")
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def gossip_round(self) -> None:
        """One round: heartbeat, exchange with one peer, expire stale peers, clean up."""
        now, mono = self.clock(), self.monotonic()
        s = self.settings

        with self._in_flight_lock:
            judged = set(self._suspects)

        def choose(m: Membership) -> tuple[str | None, str | None, float]:
            # A peer under judgement is being tried already: rounds go to the others, so
            # that gossip keeps flowing between the members that can reach each other.
            peers = [p for p in m.peers(True, hints=True) if p.base_url not in judged]
            target = None
            if peers:
                monitors = [p for p in peers if p.monitor]
                if monitors and self.rng.random() < MONITOR_PREFERENCE:
                    target = self.rng.choice(monitors).base_url
                else:
                    # The monitors have their share already: the pass goes over the
                    # others, so that each of them is met sooner (a crash found sooner).
                    others = {p.base_url for p in peers if not p.monitor}
                    target = self._next_target(others or {p.base_url for p in peers})
            probe = None
            if self.rng.random() < OFFLINE_PROBE:
                offline = m.peers(online=False)
                if offline:
                    probe = self.rng.choice(offline).base_url
            return target, probe, s.failure_timeout_for(len(m.entries))

        target, probe, timeout = self._transact(choose)
        self._check_pause(mono, timeout)
        if target is not None:
            failure = self._attempt(target)
            if failure is not None:
                self._suspect(target, failure)
        if probe is not None:
            self._exchange(probe, quiet=True)
        now, mono = self.clock(), self.monotonic()
        self._failure_timeout = timeout
        retention, stale = s.retention_ms, timeout * (1 + self._health())

        def tidy(m: Membership) -> Changes:
            return m.expire(now, mono, stale).extend(m.cleanup(now, retention))

        self._publish(self._transact(tidy))
        self.last_round = now
        self.stats.add(rounds=1)
        if (
            self.self_check
            and mono - self._last_self_check >= CONFLICT_WINDOW_ROUNDS * s.gossip_interval
        ):
            # Now and then, whatever the clocks: two claimants with equal clocks rarely
            # outbid each other, so refutations alone may never reveal a conflict.
            self._last_self_check = mono
            self._self_check_job()

    def _next_target(self, online: set[str]) -> str:
        """The next peer of a pass over ``online`` (the round's candidates) in a fresh random
        order (SWIM's round-robin). Each pick is still a random peer, but every peer is met once per pass,
        so a failed one is found within a pass, not after an unbounded run of bad luck.
        A peer that joins mid-pass goes in at a random place of the rest of it (as SWIM
        does), not a whole pass later. Called inside a transaction (one round at a time)."""
        for url in sorted(online - self._in_pass):
            self._pass.insert(self.rng.randrange(len(self._pass) + 1), url)
            self._in_pass.add(url)
        while self._pass:
            url = self._pass.pop()
            if url in online:  # left since the pass began: skip it
                return url
        self._pass = sorted(online)
        self.rng.shuffle(self._pass)
        self._in_pass = set(online)
        return self._pass.pop()

    def _check_pause(self, mono: float, timeout: float) -> None:
        """If this node itself stalled (GC, SIGSTOP, overload), do not blame its peers for it."""
        last, self._last_round_mono = self._last_round_mono, mono
        if last is not None and mono - last > max(3 * self._round_delay, timeout / 2):
            log.warning("this node stalled for %.1f s; restarting peer timeouts", mono - last)
            self.awareness.apply(2)
            self._transact(lambda m: m.forgive(mono))
            with self._in_flight_lock:  # nor count its own stall as a judged peer's silence
                for suspicion in self._suspects.values():
                    suspicion.since, suspicion.slow = None, 0

    def _exchange(self, base_url: str, quiet: bool = False) -> bool:
        """Send our state to one peer and merge its reply. True on success."""
        return self._attempt(base_url, quiet) is None

    def _attempt(
        self, base_url: str, quiet: bool = False, timeout: float | None = None
    ) -> Failure | None:
        """One exchange with the adaptive timeout (or ``timeout``): None on success."""
        timeout = timeout or self.round_trips.timeout(base_url)
        message = self._state()
        started, began = self.monotonic(), self.clock()
        try:
            reply = self.transport.gossip(base_url, message, timeout)
        except Exception as exc:  # any failure is the peer's failed exchange; the round carries on
            slow = self._slow(started, timeout)
            if slow:
                self.round_trips.timed_out(base_url)
            self.awareness.failed(base_url, started)
            if not quiet:
                self.stats.add(gossip_failures=1)
                log.warning(
                    "%s",
                    _failed(f"gossip with {base_url}", exc),
                    extra={"node": self.settings.base_url},
                )
            return Failure(bool(getattr(exc, "refused", False)), slow, timeout, started, began)
        self.round_trips.sample(base_url, self.monotonic() - started)
        if not self._merge_quietly(reply, base_url):
            return Failure(False, False, timeout, started, began)
        self.awareness.reached(base_url)
        return None

    def _merge_quietly(self, reply: ServerList, base_url: str) -> bool:
        """Merge a peer's reply; a failure to merge is logged and counted, never raised."""
        try:
            self._merge(reply, sender=f"the reply of {base_url}", answered=base_url)
        except Exception:
            self.stats.add(gossip_failures=1)
            log.exception("merging the reply of %s failed", base_url)
            return False
        return True

    def _slow(self, started: float, timeout: float) -> bool:
        """Whether a failed attempt begun at ``started`` waited out (nearly) its timeout."""
        return self.monotonic() - started >= 0.9 * timeout

    def _suspect(self, base_url: str, failure: Failure) -> None:
        """A round's exchange failed: judge the peer on a job of its own (rounds go on
        meanwhile, so gossip keeps flowing), unless a judgement of it is under way."""

        def known(m: Membership) -> int:
            entry = m.entries.get(base_url)
            return entry.server.last_update if entry is not None else 0

        stamp = self._transact(known)
        with self._in_flight_lock:
            if base_url in self._suspects:
                return
            suspicion = self._suspects[base_url] = Suspicion(base_url, failure.began, stamp)
        self._later(0, suspicion, lambda: self._judge(suspicion, failure))

    def _later(self, delay: float, s: Suspicion, step: Callable[[], None]) -> None:
        """Run a step of the judgement ``s`` on a job of its own. A step that fails ends the
        judgement: rounds pass over a peer under judgement, so a judgement left hanging
        would hide the peer from them for good."""

        def run() -> None:
            try:
                step()
            except Exception:
                log.exception("judging %s failed", s.base_url)
                self._end_suspicion(s, None)

        self.scheduler.after(delay, run)

    def _judge(self, s: Suspicion, failure: Failure) -> None:
        """After a failed direct attempt: ask helpers, then clear, retry or move the peer offline.

        Offline when helpers confirm a refused connection (strong evidence); after
        SLOW_FAILURES attempts that waited out their timeout, once the peer has been
        silent since the first of them for the hang silence (so a peer that pauses
        briefly, e.g. a gunicorn worker being replaced, is not misjudged); or after
        ``retries`` failed retries. The judgement ends without a verdict when a helper
        reached the peer or the peer proved alive meanwhile (:meth:`_moot`). The helpers
        wait as long as our next attempt would (the backed-off timeout).
        """
        s.wait = min(failure.timeout * (2 if failure.slow else 1), self.settings.request_timeout)
        reached = self._probe_indirectly(s.base_url, s.wait)
        s.news_when_asked = self._news(s)
        self._decide(s, failure, reached)

    def _decide(self, s: Suspicion, failure: Failure, reached: bool | None) -> None:
        """:meth:`_judge` once the helpers have answered (``reached``, as from
        :meth:`_probe_indirectly`)."""
        s.failed += 1
        if failure.slow:
            s.slow += 1
            s.since = failure.started if s.since is None else s.since
        # News that the peer is alive outweighs our failed attempts unless the helpers tried
        # it and could not reach it either, with that news already in, while this node is
        # healthy: a peer that sends but cannot be reached is unfit to serve. News newer
        # than their answer (a partition healed meanwhile) counts; so does any news for a
        # node in poor health.
        health = self._health(s.base_url)
        trust_news = reached is not False or not s.news_when_asked or health > 0
        if reached or self._moot(s, trust_news):
            self._end_suspicion(s, reached)
            return
        confirmed = reached is False and failure.refused
        # A node in the worst health whose helpers did not answer cannot tell a silent
        # peer from its own trouble: only helpers that tried the peer settle a hang then.
        since = s.since  # read once: a stall of this node may clear it (_check_pause)
        hung = (
            s.slow >= SLOW_FAILURES
            and since is not None
            and self._silence_left(since, s.base_url) <= 0
            and (reached is False or health < self.awareness.maximum)
        )
        # Attempts that waited out their timeout are judged by the hang rule alone: counting
        # them as retries would cut short the silence a node in poor health waits out.
        if not confirmed and not hung and s.failed - s.slow <= self.settings.retries:
            # Attempts begin ``retry_delay`` apart (longer for a node in trouble, as rounds
            # are): the time spent waiting on this one and on the helpers counts towards it.
            delay = self.settings.retry_delay * (1 + self.awareness.score) - (
                self.monotonic() - failure.started
            )
            self._later(max(delay, 0.0), s, lambda: self._retry(s))
            return
        self._end_suspicion(s, False)
        if confirmed:
            why = "its connection was refused, and no helper reached it"
        elif hung:
            why = f"silent for {self.monotonic() - (since or 0.0):.1f} s over {s.slow} attempts"
        else:
            why = f"{s.failed} attempts failed"
        why += " (helpers: could not reach it" if reached is False else " (no helper answered"
        why += f"; health {health})"
        log.info("%s does not answer: %s", s.base_url, why, extra={"node": self.settings.base_url})
        # A silence is stamped when the judgement began, not now: the verdict says "silent
        # since then", so it never outbids a heartbeat the peer issued later, which a peer
        # that is alive after all has spread meanwhile (then the verdict changes nothing
        # there). A refused connection confirmed by helpers says "gone now": stamped now, so
        # that the last heartbeats of a peer that was stopping when the judgement began,
        # arriving late, do not bring it back for a moment (peer_left, peer_joined, peer_left).
        now, mono = self.clock(), self.monotonic()
        at = now if confirmed else min(s.began, now)
        changes = self._transact(lambda m: m.mark_offline(s.base_url, at, mono))
        self._publish(changes)
        if changes.left:
            self._spread()

    def _moot(self, s: Suspicion, trust_news: bool) -> bool:
        """Whether the judgement ``s`` has nothing left to decide: the peer is no longer
        online here (another member's verdict arrived, or its record is gone), or, with
        ``trust_news``, there is news of it (:meth:`_news`)."""

        def check(m: Membership) -> bool:
            entry = m.entries.get(s.base_url)
            return entry is None or not entry.online or (trust_news and self._proves(s, entry))

        return self._transact(check)

    def _news(self, s: Suspicion) -> bool:
        """Whether the peer proved alive since the judgement ``s`` began: a record of it newer
        than the one known then, stamped after the judgement began (a heartbeat, by gossip
        or in its own request)."""

        def check(m: Membership) -> bool:
            entry = m.entries.get(s.base_url)
            return entry is not None and entry.online and self._proves(s, entry)

        return self._transact(check)

    @staticmethod
    def _proves(s: Suspicion, entry: Entry) -> bool:
        stamp = entry.server.last_update
        return stamp > s.known and stamp >= s.began

    def _end_suspicion(self, s: Suspicion, reached: bool | None) -> None:
        """The judgement ``s`` is over (``reached``: a helper reached the peer)."""
        if reached:
            log.info("%s did not answer this node, but another member reached it", s.base_url)
        with self._in_flight_lock:
            if self._suspects.get(s.base_url) is s:
                del self._suspects[s.base_url]

    def _silence_left(self, since: float, suspect: str) -> float:
        """Seconds until ``suspect``, silent since ``since``, has been silent long enough to
        be judged hung (zero or less: it has). A node in poor health waits longer."""
        silence = HANG_SILENCE * self.settings.request_timeout * (1 + self._health(suspect))
        return since + silence - self.monotonic()

    def _health(self, suspect: str | None = None) -> int:
        """This node's health (awareness.py) when it judges ``suspect``: 0 is healthy."""
        return self.awareness.health(self.monotonic(), self._failure_timeout, suspect)

    def _spread(self) -> None:
        """Tell a few members at once that a peer went offline, instead of waiting for rounds."""
        k = self.settings.probe_helpers
        if not k:
            return  # the rule before indirect probes: rounds alone spread the news

        def pick(m: Membership) -> list[str]:
            peers = [p.base_url for p in m.peers(online=True)]
            return self.rng.sample(peers, min(k, len(peers)))

        for url, reply in self.transport.gossip_many(self._transact(pick), self._state()).items():
            if isinstance(reply, ServerList):
                self._merge_quietly(reply, url)

    def _retry(self, s: Suspicion) -> None:
        url = s.base_url
        if not self.live or self._moot(s, trust_news=False):
            self._end_suspicion(s, None)
            return
        timeout, reached = s.wait, None
        deciding = s.since is not None and s.slow + 1 >= SLOW_FAILURES
        if s.since is not None and deciding:
            # The attempt that can settle a hang: the helpers are asked first, then the
            # peer is waited on until the silence settles it, and no less than the backoff
            # (within the request timeout). The verdict then comes when the silence ends,
            # not a round of helpers after it, and the peer is watched up to that moment.
            reached = self._probe_indirectly(url, timeout)
            s.news_when_asked = self._news(s)
            since = s.since  # None if a stall of this node restarted the silence meanwhile
            if since is not None:
                left = self._silence_left(since, url)
                timeout = min(max(left, timeout), self.settings.request_timeout)
        failure = self._attempt(url, timeout=timeout) if self.live and not reached else None
        if failure is None:  # the peer answered (to us or a helper), or this node stopped
            self._end_suspicion(s, reached)
            return
        if deciding:
            self._decide(s, failure, reached)
        else:
            self._judge(s, failure)

    def _probe_indirectly(self, base_url: str, timeout: float) -> bool | None:
        """Ask up to ``probe_helpers`` other online members to try ``base_url`` (SWIM's ping-req).

        True if any reached it; False if none did and at least one answered that it
        could not; None if no helper answered (none known, a 404 from a node of the original, failures).
        """
        k = self.settings.probe_helpers

        def pick(m: Membership) -> list[str]:
            others = [p.base_url for p in m.peers(online=True) if p.base_url != base_url]
            return self.rng.sample(others, min(k, len(others)))

        helpers = self._transact(pick) if k else []
        if not helpers:
            return None
        # Each helper waits ``timeout`` for the peer; we wait that plus our own timeout for it.
        waits = [timeout + self.round_trips.timeout(h) for h in helpers]
        answers = self.transport.probe_many(helpers, base_url, timeout, waits)
        for helper, answer in zip(helpers, answers, strict=True):
            log.debug("probe of %s through %s: %s", base_url, helper, answer)
        if True in answers:
            return True
        if False in answers:
            return False
        self.awareness.apply(1)  # no helper answered us either: the trouble may be ours
        return None

    # -- requests ------------------------------------------------------------

    def authorize(
        self, authorization: str | None, control: bool, sender: str = "a request"
    ) -> None:
        """Raise unless started and ``authorization`` carries the gossip (or control) secret."""
        if not self.started or self.passive:
            raise NotStarted(self.passive or "clustershazbot is not started")
        if not self.accepts(authorization, control, sender):
            raise Unauthorized(f"missing or wrong {'control' if control else 'gossip'} secret")

    def accepts(self, authorization: str | None, control: bool, sender: str = "a request") -> bool:
        """Whether ``authorization`` carries an accepted gossip (or control) secret. One of
        the older secrets of a rotation is counted, and logged at most once a minute
        (``sender``: where the request came from), so that whoever still sends it is found
        before it is dropped."""
        s = self.settings
        index = secret_index(
            authorization, s.accepted_control_secrets if control else s.accepted_secrets
        )
        if index > 0:
            kind = "control" if control else "gossip"
            self.stats.add(**{f"older_{kind}_secret_requests": 1})
            mono = self.monotonic()
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
                    self.stats.snapshot()[f"older_{kind}_secret_requests"],
                )
        return index >= 0

    def handle_gossip(
        self, authorization: str | None, body: Any, sender: str = "a gossip request"
    ) -> dict[str, Any]:
        """A peer's GossipMessage: merge it, answer with our whole state."""
        self.authorize(authorization, control=False)
        return self._merge(ServerList.from_dict(body, message="gossip"), True, sender)

    def handle_gossip_body(self, authorization: str | None, raw: bytes) -> bytes:
        """:meth:`handle_gossip` from the request's JSON bytes to the reply's: with msgspec,
        the records the table already holds cost no parsing in Python, and the reply is
        joined from the entries' cached bytes."""
        self.authorize(authorization, control=False)
        return self.answer_gossip(raw)

    def answer_gossip(self, raw: bytes, sender: str = "a gossip request") -> bytes:
        """:meth:`handle_gossip_body` of a request that :meth:`authorize` has let in
        (``sender``: where it came from, for log lines)."""
        servers: Incoming | ServerList | None = decode_gossip(raw)
        if servers is None:
            servers = ServerList.from_dict(decode_json(raw, "the body"), message="gossip")
        return self._merge_then(servers, True, Membership.gossip_body, sender)

    def handle_probe(self, authorization: str | None, body: Any) -> dict[str, Any]:
        """Another member asks this node to try one of its peers: ``{"reachable": bool}``.

        Only members this node knows (hence already allowed by SHAZBOT_ALLOWED_PEERS) are
        tried, within the asker's timeout and this node's request timeout, at most
        MAX_PROBES at once: the endpoint cannot be used to reach arbitrary addresses.
        """
        self.authorize(authorization, control=False)
        return self.answer_probe(body)

    def answer_probe(self, body: Any) -> dict[str, Any]:
        """:meth:`handle_probe` of a request that :meth:`authorize` has let in."""
        target, timeout = parse_probe(body)
        if base_url_problem(target) or not self.peer_policy.allows(target):
            raise BadMessage("baseUrl is not a valid, allowed base URL")
        if not self._transact(lambda m: target in m.entries):
            raise BadMessage("baseUrl is not a member known to this node")
        if target == self.settings.base_url:
            return {"reachable": True}
        if not self._probes.acquire(blocking=False):
            raise Busy("too many probes at once")
        try:
            limit = self.settings.request_timeout
            failure = self._attempt(target, quiet=True, timeout=min(timeout or limit, limit))
        finally:
            self._probes.release()
        return {"reachable": failure is None}

    def handle_list(self, authorization: str | None, sender: str = "a request") -> dict[str, Any]:
        """Our online list; offline too when the control secret is given."""
        if not self.started or self.passive:
            raise NotStarted(self.passive or "clustershazbot is not started")
        full = bool(authorization) and self.accepts(authorization, True, sender)
        return self.server_list(include_offline=full).to_dict(include_offline=full)

    def handle_control(self, authorization: str | None, body: Any) -> dict[str, Any]:
        """Take this node offline (sticky) or online again."""
        self.authorize(authorization, control=True)
        return self.answer_control(body)

    def answer_control(self, body: Any) -> dict[str, Any]:
        """:meth:`handle_control` of a request that :meth:`authorize` has let in."""
        self.set_online(parse_control(body))
        return {"success": True}

    def set_online(self, online: bool) -> None:
        now, mono = self.clock(), self.monotonic()

        def op(m: Membership) -> list[str]:
            m.control_online = online
            m.heartbeat(now, mono, self.settings.max_clock_skew_ms)
            return self._announce_targets(m)

        targets = self._transact(op)
        log.info("control: this node is now %s", "online" if online else "offline")
        if self.live:
            # Told at once, to those a shutdown tells, not a round or more later (a drained
            # node should stop getting work now); on a thread of its own, so that the
            # answer to the control request waits for no peer (nor for a schedule, which
            # runs in one process of a gunicorn host only).
            threading.Thread(target=self._greet, args=(targets, True), daemon=True).start()

    def health(self) -> dict[str, Any]:
        """The original's health section, and ``{"status": "degraded", "reason": ...,
        "cluster": ...}`` while this node knows no peer online and cannot read the master
        list."""
        if self.passive:
            return {"status": "error", "error": self.passive}
        if not self.started:
            return {"status": "error", "error": "clustershazbot is not started"}
        if not self.live:
            return {
                "status": "error",
                "error": f"starting: {self.self_check_error}"
                if self.self_check_error
                else "starting: checking that SHAZBOT_BASE_URL "
                f"{self.settings.base_url} leads back to this node",
            }
        if self.self_check_error:
            return {"status": "error", "error": self.self_check_error}
        try:
            cluster = self.server_list().to_dict()
        except Exception as exc:
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        error = self.master_list_error
        if error and not any(s["baseUrl"] != self.settings.base_url for s in cluster["online"]):
            # Alone, and nothing to find the others with: it serves, but outside the cluster.
            reason = f"alone: no peer online, and the master list cannot be read ({error})"
            return {"status": "degraded", "reason": reason, "cluster": cluster}
        return {"status": "ok", "cluster": cluster}


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
