"""Round logic driven with an injected clock and scheduler (no threads, no network).

The stall check:
A node that was paused (SIGSTOP, a long GC) must not blame peers for its own
silence: the integration test in test_fault_process.py shows the end result,
but there one exchange on waking refreshes every peer anyway. Here the peer
that answers knows nothing of the others, so only the stall check keeps them.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from flask_clustershazbot import Engine, GossipServer, ServerList
from flask_clustershazbot.config import load_settings
from flask_clustershazbot.errors import TransportError
from flask_clustershazbot.testing import MemoryMasterList, Network

ME = "http://127.0.0.1:1001/"
PEERS = [f"http://127.0.0.1:{1002 + i}/" for i in range(3)]


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def wall(self) -> int:
        return 1_700_000_000_000 + int(self.mono * 1000)


class NoJobs:
    def start(self) -> None: ...
    def after(self, delay: float, fn: Any) -> None: ...
    def shutdown(self) -> None: ...
    def reset_after_fork(self) -> None: ...


class AnswersAboutItself:
    """A peer's reply that carries only its own fresh record."""

    def __init__(self, clock: Clock, monitors: tuple[str, ...] = ()) -> None:
        self.clock, self.monitors = clock, monitors

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        monitor = base_url in self.monitors
        return ServerList((GossipServer(base_url, monitor, self.clock.wall()),))

    def gossip_many(self, urls: Any, message: Any) -> dict[str, Any]:
        return {}


def make_engine(clock: Clock, transport: Any, scheduler: Any, **options: Any) -> Engine:
    settings = load_settings(
        {},
        {},
        {
            "secret": "s" * 20,
            "control_secret": "c" * 20,
            "base_url": ME,
            "master_list": "/nonexistent/master.json",
            "gossip_interval": 1,
            "failure_timeout": 10,
            **options,
        },
    )
    return Engine(
        settings,
        transport=transport,
        master_list=MemoryMasterList(Network(random.Random(0))),  # empty: nobody listed
        scheduler=scheduler,
        clock=clock.wall,
        monotonic=lambda: clock.mono,
        rng=random.Random(1),
    )


@pytest.fixture
def engine() -> tuple[Engine, Clock]:
    clock = Clock()
    engine = make_engine(clock, AnswersAboutItself(clock), NoJobs())
    engine.start()
    engine.merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in PEERS)))
    return engine, clock


def online_peers(engine: Engine) -> set[str]:
    return {s.base_url for s in engine.server_list().online} - {ME}


def test_a_stalled_node_restarts_its_peer_timeouts(
    engine: tuple[Engine, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    engine, clock = engine
    engine.gossip_round()
    clock.mono += 30  # this node itself was frozen for 3 failure timeouts
    with caplog.at_level(logging.WARNING, "flask_clustershazbot"):
        engine.gossip_round()
    assert online_peers(engine) == set(PEERS)
    assert any("stalled" in r.getMessage() for r in caplog.records)


class AnswersWithoutItself(AnswersAboutItself):
    """Like AnswersAboutItself, but ``mute`` answers with nothing about itself."""

    def __init__(self, clock: Clock, mute: str) -> None:
        super().__init__(clock)
        self.mute = mute

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        return ServerList(()) if base_url == self.mute else super().gossip(base_url, message)


def test_a_running_node_times_out_a_peer_whose_heartbeat_stops(
    engine: tuple[Engine, Clock],
) -> None:
    engine, clock = engine
    engine.transport = AnswersWithoutItself(clock, PEERS[2])  # type: ignore[assignment]
    for _ in range(30):  # rounds every second: no stall, PEERS[2] really stopped beating
        clock.mono += 1
        engine.gossip_round()
    assert online_peers(engine) == set(PEERS[:2])


class RecordsTargets(AnswersAboutItself):
    def __init__(self, clock: Clock, monitors: tuple[str, ...] = ()) -> None:
        super().__init__(clock, monitors)
        self.targets: list[str] = []

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        self.targets.append(base_url)
        return super().gossip(base_url, message)


def test_rounds_meet_every_peer_once_per_pass_and_a_newcomer_within_the_current_one() -> None:
    """SWIM's round-robin: a crashed peer is met within a pass, and so is one that joined
    mid-pass (not only a pass later: at N = 100 that left a crash to the failure timeout)."""
    clock = Clock()
    transport = RecordsTargets(clock)
    engine = make_engine(clock, transport, NoJobs(), failure_timeout=1e6)
    engine.start()
    peers = [f"http://127.0.0.1:{2000 + i}/" for i in range(20)]
    engine.merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in peers)))
    engine.gossip_round()  # the pass begins
    newcomer = "http://127.0.0.1:3000/"
    engine.merge(ServerList((GossipServer(newcomer, False, clock.wall()),)))
    for _ in range(20 + 21):
        clock.mono += 1
        engine.gossip_round()
    first, second = transport.targets[:21], transport.targets[21:]
    assert sorted(first) == sorted(peers + [newcomer])
    assert sorted(second) == sorted(peers + [newcomer])


def test_the_pass_goes_over_the_peers_that_are_not_monitors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Monitors get their share of rounds by preference; the other rounds meet each of the
    other peers once per pass of theirs alone, so a crashed one is met sooner."""
    clock = Clock()
    monitor = "http://127.0.0.1:1999/"
    transport = RecordsTargets(clock, (monitor,))
    engine = make_engine(clock, transport, NoJobs(), failure_timeout=1e6)
    engine.start()
    peers = [f"http://127.0.0.1:{2000 + i}/" for i in range(10)]
    records = [GossipServer(monitor, True, clock.wall())]
    engine.merge(ServerList(tuple(records + [GossipServer(u, False, clock.wall()) for u in peers])))
    rounds = 400
    for _ in range(rounds):
        clock.mono += 1
        engine.gossip_round()
    others = [t for t in transport.targets if t != monitor]
    assert 0.4 < 1 - len(others) / rounds < 0.6  # MONITOR_PREFERENCE, and no more
    passes = [others[i : i + 10] for i in range(0, len(others) - 9, 10)]
    assert passes and all(sorted(p) == peers for p in passes)
    monkeypatch.setattr("flask_clustershazbot.engine.rounds.MONITOR_PREFERENCE", 0.0)
    transport.targets.clear()
    for _ in range(30):
        clock.mono += 1
        engine.gossip_round()
    assert monitor not in transport.targets


class Refuses:
    """Every exchange fails at once, like a crashed peer's refused connection."""

    def __init__(self) -> None:
        self.attempts = 0

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        self.attempts += 1
        raise TransportError(f"gossip with {base_url}: ConnectionRefusedError")

    def gossip_many(self, urls: Any, message: Any) -> dict[str, Any]:
        return {}


class Pending:
    """Keeps scheduled retries so that the test runs them one by one."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def start(self) -> None: ...
    def shutdown(self) -> None: ...

    def after(self, delay: float, fn: Any) -> None:
        self.jobs.append(fn)


@pytest.mark.parametrize("retries", [1, 5])
def test_a_refusing_peer_goes_offline_after_the_configured_retries(retries: int) -> None:
    clock, transport, jobs = Clock(), Refuses(), Pending()
    engine = make_engine(clock, transport, jobs, retries=retries, failure_timeout=1e6)
    engine.start()
    engine.merge(ServerList((GossipServer(PEERS[0], False, clock.wall()),)))
    jobs.jobs.clear()  # bootstrap and the first round/announcement jobs: not run here
    engine.gossip_round()
    assert len(jobs.jobs) == 1
    jobs.jobs.pop()()  # the judgement runs on a job of its own, not in the round
    for attempt in range(retries):
        assert online_peers(engine) == {PEERS[0]}, f"offline before retry {attempt + 1}"
        assert len(jobs.jobs) == 1
        jobs.jobs.pop()()
    assert online_peers(engine) == set()
    assert transport.attempts == retries + 1
    assert jobs.jobs == []


class HangsFrom(AnswersAboutItself):
    """PEERS[0] answers at once until ``hang_from``, then leaves every request hanging (for
    its timeout, on the clock) until ``resume_at``; helpers cannot reach it meanwhile."""

    def __init__(self, clock: Clock, resume_at: float = float("inf")) -> None:
        super().__init__(clock)
        self.hang_from, self.resume_at = float("inf"), resume_at
        self.events: list[tuple[str, float, float]] = []

    def _wait(self, kind: str, timeout: float) -> bool:
        """Whether PEERS[0] answers within ``timeout``; the clock moves on either way."""
        self.events.append((kind, self.clock.mono - self.hang_from, timeout))
        answers = self.clock.mono + timeout >= self.resume_at
        self.clock.mono = min(self.clock.mono + timeout, self.resume_at)
        return answers

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        if base_url != PEERS[0] or self.clock.mono < self.hang_from:
            return super().gossip(base_url, message)
        if self._wait("direct", timeout or 5.0):
            return super().gossip(base_url, message)
        raise TransportError(f"gossip with {base_url}: ReadTimeout")

    def probe_many(self, helpers: list[str], target: str, timeout: float, waits: Any) -> list[Any]:
        return [self._wait("helpers", timeout)] * len(helpers)


class Due:
    """Keeps scheduled jobs with their due time on the test's clock."""

    jobs: list[tuple[float, Any]]

    def __init__(self, clock: Clock) -> None:
        self.clock, self.jobs = clock, []

    def start(self) -> None: ...
    def shutdown(self) -> None: ...

    def after(self, delay: float, fn: Any) -> None:
        self.jobs.append((self.clock.mono + delay, fn))

    def run_all(self) -> None:
        for _ in range(20):  # retries are few; bounded all the same
            if not self.jobs:
                return
            due, fn = self.jobs.pop(0)
            self.clock.mono = max(self.clock.mono, due)
            fn()


@pytest.mark.parametrize("resume_after", [None, 4.3])
def test_a_hang_is_settled_when_the_silence_ends_and_watched_until_then(
    resume_after: float | None,
) -> None:
    """The deciding retry asks the helpers first, then waits on the peer until the silence
    (HANG_SILENCE x the request timeout, 4.5 s) ends, and at least as long as the backed-off
    timeout (a peer slower than the floor is not silent): a peer that answers before then
    stays online, and the verdict comes at the end of that attempt."""
    clock = Clock()
    transport = HangsFrom(clock)
    jobs = Due(clock)
    engine = make_engine(clock, transport, jobs, failure_timeout=1e6)
    engine.start()
    engine.merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in PEERS)))
    for _ in range(3):  # round trips sampled: the adaptive timeout is at its 0.5 s floor
        assert engine.rounds.attempt(PEERS[0]) is None
    jobs.jobs.clear()  # bootstrap, rounds, announcements: not run here
    transport.hang_from = clock.mono
    if resume_after is not None:
        transport.resume_at = clock.mono + resume_after
    failure = engine.rounds.attempt(PEERS[0])
    assert failure is not None and failure.slow
    engine.suspicions.suspect(PEERS[0], failure)
    for _ in range(3):  # probes this node ran for others timed out too: a longer estimate,
        engine.round_trips.timed_out(PEERS[0])  # which must not stretch this judgement
    jobs.run_all()
    assert transport.events == [
        ("direct", 0.0, 0.5),  # the round's attempt, which timed out: the backoff doubles
        ("helpers", 0.5, 1.0),  # the helpers wait as long as our next attempt would
        # The deciding retry, retry_delay after the first: the helpers first, then the peer
        # for what is left of the 4.5 s silence, but no less than the backed-off timeout.
        ("helpers", 3.0, 1.0),
        ("direct", 4.0, 1.0),
    ]
    if resume_after is None:
        assert clock.mono - transport.hang_from == pytest.approx(5.0)
        assert online_peers(engine) == set(PEERS[1:])
    else:
        assert online_peers(engine) == set(PEERS)
    assert jobs.jobs == []


class ProbesFail(Refuses):
    """Exchanges are refused and asking helpers raises (a store or transport fault)."""

    def probe_many(self, helpers: Any, target: str, timeout: float, waits: Any) -> list[Any]:
        raise RuntimeError("the helpers could not be asked")


def test_a_judgement_that_fails_ends_so_rounds_try_the_peer_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rounds pass over a peer under judgement: a judgement whose step raised must end, or
    the peer would be hidden from every later round (and never found dead)."""
    clock, transport, jobs = Clock(), ProbesFail(), Pending()
    engine = make_engine(clock, transport, jobs, failure_timeout=1e6)
    engine.start()
    engine.merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in PEERS[:2])))
    jobs.jobs.clear()  # bootstrap and the first round/announcement jobs: not run here
    engine.gossip_round()
    judged = transport.attempts
    assert len(jobs.jobs) == 1
    jobs.jobs.pop()()  # the judgement: asking the helpers raises
    assert "judging" in caplog.text
    assert not engine.suspicions.judged()
    for _ in range(4):  # each round meets a peer again; each judgement fails and ends
        engine.gossip_round()
        while jobs.jobs:
            jobs.jobs.pop()()
    assert transport.attempts == judged + 4
    assert not engine.suspicions.judged()


class StopsAnswering(AnswersAboutItself):
    """PEERS[0] times out ``hangs`` times (a host whose workers are stopping), then refuses
    (its listener closed); the helpers cannot reach it either. The clock moves on."""

    def __init__(self, clock: Clock, hangs: int) -> None:
        super().__init__(clock)
        self.hangs = hangs

    def gossip(
        self, base_url: str, message: dict[str, Any], timeout: float | None = None
    ) -> ServerList:
        if base_url != PEERS[0]:
            return super().gossip(base_url, message)
        if self.hangs:
            self.hangs -= 1
            self.clock.mono += timeout or 1.0
            raise TransportError(f"gossip with {base_url}: ReadTimeout")
        error = TransportError(f"gossip with {base_url}: ConnectionRefusedError")
        error.refused = True
        raise error

    def probe_many(self, helpers: list[str], target: str, timeout: float, waits: Any) -> list[Any]:
        self.clock.mono += 0.1
        return [False] * len(helpers)


def test_a_stopping_peers_last_heartbeats_do_not_bring_it_back_after_a_refusal() -> None:
    """A peer that hung while it stopped and then refused connections (the helpers could not
    reach it either) is gone now: the verdict is stamped when it is made. Its last heartbeats,
    issued after the judgement began and arriving late, leave it offline (no peer_joined and
    second peer_left); one issued after the verdict (a restart) brings it back."""
    clock = Clock()
    jobs = Due(clock)
    engine = make_engine(clock, StopsAnswering(clock, hangs=1), jobs, failure_timeout=1e6)
    engine.start()
    engine.merge(ServerList(tuple(GossipServer(u, False, clock.wall()) for u in PEERS)))
    jobs.jobs.clear()
    for _ in range(len(PEERS)):  # one pass of rounds meets PEERS[0]
        clock.mono += 1
        engine.gossip_round()
    began = clock.wall()
    assert engine.suspicions.judged() == {PEERS[0]}
    jobs.jobs = [job for job in jobs.jobs if job[1].__qualname__.startswith("Suspicions._later")]
    jobs.run_all()
    assert PEERS[0] not in online_peers(engine)
    verdict = clock.wall()
    assert verdict > began + 1000
    offline = {s.base_url: s.last_update for s in engine.server_list().offline}
    assert offline[PEERS[0]] >= verdict - 1

    engine.merge(ServerList((GossipServer(PEERS[0], False, began + 500),)))
    assert PEERS[0] not in online_peers(engine)
    engine.merge(ServerList((GossipServer(PEERS[0], False, verdict + 1000),)))
    assert PEERS[0] in online_peers(engine)


@pytest.mark.parametrize(
    ("reply_from", "ahead_ms", "expected"),
    [
        (PEERS[0], 0, "member"),  # it reports itself: confirmed
        (PEERS[1], 0, None),  # it answers as another member (a second address): dropped
        (PEERS[0], 3_600_000, "hint"),  # its clock is an hour ahead: no answer either way
    ],
    ids=["reports-itself", "answers-as-another", "clock-ahead"],
)
def test_a_hint_is_settled_only_by_an_answer_this_node_can_read(
    reply_from: str, ahead_ms: int, expected: str | None
) -> None:
    """A member learnt from the master list is confirmed when it reports itself, dropped
    when it answers as another member; a reply whose own record is stamped beyond the clock
    guard says neither, and the hint stays (it used to be dropped: a node whose clock had
    jumped vanished from its peers' tables)."""
    clock = Clock()

    class Replies(AnswersAboutItself):
        def gossip(self, base_url: str, message: Any, timeout: float | None = None) -> Any:
            return ServerList((GossipServer(reply_from, False, clock.wall() + ahead_ms),))

    engine = make_engine(clock, Replies(clock), NoJobs())
    engine.start()
    listed = clock.wall() - 60_000
    engine.table.merge(ServerList((GossipServer(PEERS[0], False, listed),)), hints=True)
    assert engine.store.transact(lambda m: m.entries[PEERS[0]].hint)
    engine.rounds.attempt(PEERS[0])
    entry = engine.store.transact(lambda m: m.entries.get(PEERS[0]))
    state = None if entry is None else ("hint" if entry.hint else "member")
    assert state == expected
