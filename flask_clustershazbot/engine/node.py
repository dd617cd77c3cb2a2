"""The engine's facade: one node of the cluster, its lifecycle, and the parts that run
the protocol (table, rounds, suspicions, discovery, identity, endpoints)."""

from __future__ import annotations

import enum
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from ..awareness import Awareness
from ..config import Settings
from ..masterlist.base import NodeMasterList
from ..membership import Changes, Membership
from ..peers import PeerPolicy, open_master_list_warning, weak_secret_warnings
from ..records import ServerList, parse_control
from ..rtt import RoundTrips
from ..scheduling import Scheduler
from ..stats import Stats
from ..store import MemoryStore, Store
from ..transport import Transport
from .common import log, wall_clock_ms
from .discovery import Discovery
from .endpoints import Endpoints
from .identity import Identity
from .rounds import Rounds
from .suspicion import Suspicions
from .table import Table


class Phase(enum.Enum):
    """Where a node is in its life; changed in :meth:`Engine._enter` only."""

    #: Before start(), and after shutdown() or crash().
    STOPPED = "stopped"
    #: Started; waiting for the self-check to find this process at its base URL.
    STARTING = "starting"
    #: Acts as the node: online, runs the protocol.
    LIVE = "live"
    #: Started, but never acts as the node (another process serves its base URL).
    PASSIVE = "passive"


class Engine:
    """One node of the cluster.

    Clock, monotonic clock, random source, transport, store and scheduler are all
    injectable, so that a simulator can run many engines in virtual time with this very
    code. Network I/O never happens while the store is held, and listeners run after it
    is released.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport,
        master_list: NodeMasterList,
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
        #: The node's validated settings (:class:`~flask_clustershazbot.config.Settings`).
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
        self.master_list = master_list
        self.scheduler = scheduler
        self.listener = listener
        #: SHAZBOT_ALLOWED_PEERS, applied to every record before it is merged.
        self.peer_policy = PeerPolicy(settings.allowed_peers, settings.base_url)
        self.phase = Phase.STOPPED
        #: Why this process never acts as the node (another process serves its base URL).
        self.passive: str | None = None
        self._lifecycle = threading.RLock()
        #: This node's own health: a node in trouble waits longer before it accuses a peer.
        self.awareness = Awareness()
        #: Round-trip estimates behind the adaptive gossip timeout (rtt.py).
        self.round_trips = RoundTrips(settings.min_request_timeout, settings.request_timeout)
        #: Wall-clock ms of the last completed round and master-list sync (for operators).
        self.last_round: int | None = None
        self.last_master_sync: int | None = None
        #: Why the last master-list download failed, or None if it succeeded.
        self.master_list_error: str | None = None
        #: Called whenever this process (re)creates its schedules (singleton jobs arm here).
        self.schedule_hooks: list[Callable[[], None]] = []
        self.table = Table(self)
        self.identity = Identity(self)
        self.discovery = Discovery(self)
        self.rounds = Rounds(self)
        self.suspicions = Suspicions(self)
        self.endpoints = Endpoints(self)

    @property
    def started(self) -> bool:
        """start() was called and shutdown() was not."""
        return self.phase is not Phase.STOPPED

    @property
    def live(self) -> bool:
        """This process acts as the node: it went online and runs the protocol."""
        return self.phase is Phase.LIVE

    def _enter(self, phase: Phase) -> None:
        """The one place the phase changes. Called with ``_lifecycle`` held."""
        log.debug("%s: %s -> %s", self.settings.base_url, self.phase.value, phase.value)
        self.phase = phase

    # -- the table ---------------------------------------------------------------

    def server_list(self, include_offline: bool = True) -> ServerList:
        return self.table.transact(lambda m: m.server_list(include_offline))

    def merge(self, servers: ServerList) -> None:
        """Merge records as if a peer had sent them (listeners and signals fire as usual)."""
        self.table.merge(servers)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Go online and schedule bootstrap, rounds and announcements. Returns at once.

        With ``wait_for_self_check``, going online waits until the self-check finds this
        process at the base URL (see :meth:`Identity.check`).
        """
        with self._lifecycle:
            if self.started:
                return
            self._enter(Phase.PASSIVE if self.passive else Phase.STARTING)
            self.identity.restart(self.monotonic())
            s = self.settings
            for problem in weak_secret_warnings(s.accepted_secrets, s.accepted_control_secrets):
                log.warning("weak secret: %s", problem)
            risk = open_master_list_warning(s.allowed_peers, s.master_list)
            if risk:
                log.warning("%s", risk)
            if self.wait_for_self_check:
                self.scheduler.start()
                self.scheduler.after(0, self.identity.check)
                log.info("starting as %s once that URL leads back to this process", s.base_url)
            else:
                self.go_live()

    def go_live(self) -> None:
        """Go online and run the protocol (once the self-check found this process)."""
        with self._lifecycle:
            if self.phase is not Phase.STARTING:
                return
            now, mono = self.clock(), self.monotonic()

            def go_online(m: Membership) -> None:
                m.running = True
                m.heartbeat(now, mono, self.settings.max_clock_skew_ms)

            self.table.transact(go_online)
            self._enter(Phase.LIVE)
            self.identity.went_live(mono)
            self._schedule()
            log.info("started as %s", self.settings.base_url)

    def warm_start(self, everyone: ServerList, first_round: float) -> None:
        """Act as a node that started long ago and knows ``everyone`` (a simulator's
        cluster): online at once, no bootstrap; the first round after ``first_round`` s."""
        now, mono, s = self.clock(), self.monotonic(), self.settings

        def online(m: Membership) -> None:
            m.running = True
            m.heartbeat(now, mono)
            m.merge(everyone, now, mono, s.max_clock_skew_ms, s.retention_ms)

        self.table.transact(online)
        with self._lifecycle:
            self._enter(Phase.LIVE)
        self.scheduler.start()
        self.scheduler.after(first_round, self.rounds.run)
        self.discovery.schedule_announcement()

    def run_schedules(self) -> None:
        """(Re)create the schedules; a LeaderJobs scheduler calls this when its process is elected."""
        with self._lifecycle:
            if self.phase is Phase.LIVE:
                self._schedule()
            elif self.phase is Phase.STARTING:
                self.scheduler.after(0, self.identity.check)

    def _schedule(self) -> None:
        self.suspicions.clear()
        self.rounds.restart()
        self.scheduler.start()
        self.scheduler.after(0, self.bootstrap)
        if self.self_check and not self.wait_for_self_check:
            self.scheduler.after(0, self.identity.check)  # a diagnosis only
        self.rounds.schedule()
        self.discovery.schedule_announcement()
        for hook in self.schedule_hooks:
            hook()

    def become_passive(self, reason: str, logged: bool = False) -> None:
        """Stop acting as the node for good: no schedules, no shutdown announcement
        (``logged``: the reason was logged already)."""
        with self._lifecycle:
            if self.passive:
                return
            was_live = self.live
            if was_live:  # counted before anyone can see the node passive
                self.stats.add(identity_conflicts=1)
            self.passive = reason
            if self.started:
                self._enter(Phase.PASSIVE)
                self.scheduler.shutdown()
        if was_live:
            log.error("identity conflict: %s", reason)
        elif not logged:
            log.warning("%s", reason)

    def shutdown(self) -> None:
        """Go offline, tell up to 20 peers and every monitor, optionally update the master list.

        Never raises: whatever fails is logged, and the rest of the shutdown still runs.
        """
        with self._lifecycle:
            if not self.started:
                return
            live = self.live
            self._enter(Phase.STOPPED)
            self.scheduler.shutdown()
            if not live:
                log.info("stopped (this process never acted as %s)", self.settings.base_url)
                return
            stays = "this worker stopped" if not self.announces_shutdown else self.host_goes_on()
            if stays:
                log.info("%s; the host stays online", stays)
                return
            self.discovery.announce_shutdown()

    def crash(self) -> None:
        """Stop at once without a word, as a killed process would: for tests and simulators."""
        with self._lifecycle:
            self._enter(Phase.STOPPED)
            self.scheduler.shutdown()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, connections and scheduler; rerun the schedules."""
        self._lifecycle = threading.RLock()
        self.rounds.reset_after_fork()
        self.suspicions.reset_after_fork()
        self.endpoints.reset_after_fork()
        self.stats.reset_after_fork()
        self.store.reset_after_fork()
        self.transport.reset_after_fork()
        self.master_list.reset_after_fork()
        self.scheduler.reset_after_fork()
        self.awareness.reset_after_fork()
        if self.started:
            self.scheduler.start()
            self.run_schedules()

    # -- the protocol's steps (the scheduler's jobs; tests call them directly) ---------

    def bootstrap(self) -> None:
        self.discovery.bootstrap()

    def announce(self) -> None:
        self.discovery.announce()

    def gossip_round(self) -> None:
        self.rounds.gossip_round()

    # -- requests (Flask-free: views.py and the fast path call these) ---------------------

    def authorize(
        self, authorization: str | None, control: bool, sender: str = "a request"
    ) -> None:
        self.endpoints.authorize(authorization, control, sender)

    def accepts(self, authorization: str | None, control: bool, sender: str = "a request") -> bool:
        return self.endpoints.accepts(authorization, control, sender)

    def handle_gossip(
        self, authorization: str | None, body: Any, sender: str = "a gossip request"
    ) -> dict[str, Any]:
        """A peer's GossipMessage: merge it, answer with our whole state."""
        self.authorize(authorization, control=False)
        return self.table.merge(ServerList.from_dict(body, message="gossip"), True, sender)

    def handle_gossip_body(self, authorization: str | None, raw: bytes) -> bytes:
        self.authorize(authorization, control=False)
        return self.answer_gossip(raw)

    def answer_gossip(self, raw: bytes, sender: str = "a gossip request") -> bytes:
        """:meth:`handle_gossip_body` of a request that :meth:`authorize` has let in."""
        return self.endpoints.answer_gossip(raw, sender)

    def handle_probe(self, authorization: str | None, body: Any) -> dict[str, Any]:
        self.authorize(authorization, control=False)
        return self.answer_probe(body)

    def answer_probe(self, body: Any) -> dict[str, Any]:
        return self.endpoints.answer_probe(body)

    def handle_list(self, authorization: str | None, sender: str = "a request") -> dict[str, Any]:
        return self.endpoints.answer_list(authorization, sender)

    def handle_control(self, authorization: str | None, body: Any) -> dict[str, Any]:
        self.authorize(authorization, control=True)
        return self.answer_control(body)

    def answer_control(self, body: Any) -> dict[str, Any]:
        self.set_online(parse_control(body))
        return {"success": True}

    def set_online(self, online: bool) -> None:
        self.endpoints.set_online(online)

    def health(self) -> dict[str, Any]:
        return self.endpoints.health()
