"""Discovery: the bootstrap from the master list, telling peers at once, and the
announcements that keep this node in the master list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadMessage
from ..membership import Membership
from ..records import ServerList
from .common import failed, log, why

if TYPE_CHECKING:
    from .node import Engine

#: Peers that a bootstrap or shutdown announcement reaches, besides every monitor.
ANNOUNCE_FANOUT = 20
#: Bootstrap retries after a failed master-list download wait 1, 2, 4 ... s, at most this.
MAX_BOOTSTRAP_BACKOFF = 60.0
#: A node missing from the master list checks again after at most this many seconds
#: (doubling up to SHAZBOT_MASTER_ANNOUNCE_MINIMUM), until it sees itself listed.
FIRST_LISTING_CHECK = 5.0
MAX_LISTING_CHECKS = 8


class Discovery:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._bootstrap_failures = 0

    def announce_targets(self, m: Membership, hints: bool = False) -> list[str]:
        """Up to ANNOUNCE_FANOUT random online peers and every monitor (``hints``: hints
        too, as a bootstrap meets the members the master list names)."""
        peers = m.peers(online=True, hints=hints)
        chosen = self.engine.rng.sample(peers, min(ANNOUNCE_FANOUT, len(peers)))
        monitors = [p for p in peers if p.monitor]
        return list(dict.fromkeys(p.base_url for p in chosen + monitors))

    def bootstrap(self) -> None:
        """Download and merge the master list, then announce ourselves to peers, and to the
        master list if it does not list us yet (a cold start: nobody would find us otherwise
        until the first announcement, 5 to 15 minutes away by default)."""
        e = self.engine
        if not e.live:
            return
        listed = self.sync_master_list()
        if isinstance(listed, Exception):  # whatever failed, the bootstrap is retried
            delay = min(2.0**self._bootstrap_failures, MAX_BOOTSTRAP_BACKOFF)
            self._bootstrap_failures += 1
            log.warning("master list download failed (%s); retrying in %g s", why(listed), delay)
            if isinstance(listed, BadMessage):
                self.upload_master_list()  # which drops the bad records: the retry can read it
            e.scheduler.after(delay, e.bootstrap)
            return
        self._bootstrap_failures = 0
        e.last_master_sync = e.clock()
        if not self.greet(e.table.transact(lambda m: self.announce_targets(m, hints=True))):
            return
        if not self._listed(listed):
            self._claim_listing(0)

    def greet(self, targets: list[str], quiet: bool = False) -> bool:
        """Send our state to ``targets`` at once and merge their replies; False if that
        could not be done at all (logged). A failed exchange is logged unless ``quiet``."""
        if not targets:  # nobody to tell: no heartbeat either (a node alone stays as it is)
            return True
        e = self.engine
        try:
            replies = e.transport.gossip_many(targets, e.table.state())
        except Exception:
            e.stats.add(gossip_failures=1)
            log.exception("telling peers at once failed; gossip rounds carry on")
            return False
        for url, reply in replies.items():
            if isinstance(reply, ServerList):
                e.rounds.merge_quietly(reply, url)
            elif not quiet:
                e.stats.add(gossip_failures=1)
                log.warning("bootstrap %s", failed(f"gossip with {url}", reply))
        return True

    def announce_shutdown(self) -> None:
        """Go offline and tell up to ANNOUNCE_FANOUT peers and every monitor, then update
        the master list if the settings say so at shutdown. Never raises."""
        e = self.engine
        now, mono = e.clock(), e.monotonic()

        def go_offline(m: Membership) -> tuple[dict[str, Any], list[str]] | None:
            if not m.running:  # another process of this host announced it already
                return None
            m.running = False
            m.heartbeat(now, mono, e.settings.max_clock_skew_ms)
            return m.gossip_message(), self.announce_targets(m)

        announcement = e.table.transact(go_offline)
        if announcement is None:
            log.info("stopped; another process of this host announced its shutdown")
            return
        message, targets = announcement
        try:
            e.transport.gossip_many(targets, message)
        except Exception:  # never skip the upload, never raise to the caller (atexit)
            e.stats.add(gossip_failures=1)
            log.exception("the shutdown announcement failed")
        if e.settings.update_master_list_on_shutdown:
            self.upload_master_list()
        log.info("shut down")

    def _listed(self, servers: ServerList) -> bool:
        return any(s.base_url == self.engine.settings.base_url for s in servers.online)

    def _claim_listing(self, checks: int) -> None:
        """Upload our online list now, and look again soon: another node's write at the
        same moment may have replaced ours (a master list without conditional writes)."""
        self.upload_master_list()
        if checks < MAX_LISTING_CHECKS:
            e = self.engine
            s = e.settings
            delay = min(FIRST_LISTING_CHECK, s.gossip_interval) * 2**checks
            delay = min(delay, max(s.master_announce_minimum, FIRST_LISTING_CHECK))
            e.scheduler.after(
                delay * e.rng.uniform(1.0, 1.5), lambda: self._check_listing(checks + 1)
            )

    def _check_listing(self, checks: int) -> None:
        if not self.engine.live:
            return
        listed = self.sync_master_list()
        if isinstance(listed, Exception):
            log.warning("master list download failed: %s", why(listed))
            listed = ServerList()
        if not self._listed(listed):
            self._claim_listing(checks)

    def schedule_announcement(self) -> None:
        e = self.engine
        s = e.settings
        delay = s.master_announce_minimum + e.rng.uniform(0, s.master_announce_interval)
        e.scheduler.after(delay, self._announcement_job)

    def _announcement_job(self) -> None:
        e = self.engine
        if not e.live:
            return
        self.schedule_announcement()
        if e.identity.error:
            e.identity.check()
        e.announce()

    def announce(self) -> None:
        """Download and merge the master list, then upload our online list."""
        listed = self.sync_master_list()
        if isinstance(listed, Exception):
            log.warning("master list download failed: %s", why(listed))
            if not isinstance(listed, BadMessage):
                return  # a list with bad records is still updated: the update drops them
        if self.upload_master_list():
            self.engine.last_master_sync = self.engine.clock()

    def sync_master_list(self) -> ServerList | Exception:
        """Download and merge the master list: the list, or (counted) why that failed."""
        e = self.engine
        try:
            listed = e.master_list.read()
            e.table.merge(listed, sender="the master list", hints=True)
        except Exception as exc:  # a ShazbotError, or anything from below: never fatal
            e.stats.add(master_list_failures=1)
            e.master_list_error = why(exc)
            return exc
        e.master_list_error = None
        return listed

    def upload_master_list(self) -> bool:
        e = self.engine
        try:
            e.master_list.publish(e.server_list(include_offline=True))
        except Exception as exc:
            e.stats.add(master_list_failures=1)
            log.warning("master list update failed: %s", why(exc))
            return False
        return True
