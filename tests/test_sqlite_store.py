"""The store contract, run against MemoryStore and SqliteStore; then what only the shared file does."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from flask_clustershazbot.errors import ConfigError
from flask_clustershazbot.host_state import default_state_path
from flask_clustershazbot.membership import Changes, Membership
from flask_clustershazbot.records import GossipServer, ServerList
from flask_clustershazbot.sqlite_store import HEARTBEAT_SAVE_MS, SqliteStore
from flask_clustershazbot.store import MemoryStore

ME = "http://127.0.0.1:9000/"
NOW = 1_700_000_000_000
DAY = 86_400_000
SKEW = 600_000


def peer(n: int | str, stamp: int = NOW) -> GossipServer:
    return GossipServer(f"http://10.0.0.{n}:9000/", False, stamp)


def merge(servers: ServerList, now: int = NOW) -> Callable[[Membership], Changes]:
    return lambda m: m.merge(servers, now, 100.0, SKEW, DAY)


def add_next(m: Membership) -> None:
    """A read-modify-write: name the new peer after the table's current size."""
    n = len(m.entries)
    m.merge(ServerList((GossipServer(f"http://p{n}.test/", False, NOW),)), NOW, 100.0, SKEW, DAY)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., MemoryStore | SqliteStore]:
    def make(host_id: str = "run-1") -> MemoryStore | SqliteStore:
        membership = Membership(ME, False, NOW, 100.0)
        if request.param == "memory":
            return MemoryStore(membership)
        return SqliteStore(str(tmp_path / "state.sqlite3"), membership, host_id=host_id)

    return make


# -- the contract -------------------------------------------------------------------


def test_a_merge_is_kept_and_reported_once(
    make_store: Callable[..., MemoryStore | SqliteStore],
) -> None:
    store = make_store()
    first = store.transact(merge(ServerList((peer(1),))))
    again = store.transact(merge(ServerList((peer(1),))))
    assert first.joined == [peer(1)] and not again
    listed = store.transact(lambda m: m.server_list())
    assert {s.base_url for s in listed.online} == {peer(1).base_url}  # we are not running yet
    assert [s.base_url for s in listed.offline] == [ME]


def test_a_newer_offline_record_leaves_and_a_stale_online_one_never_revives(
    make_store: Callable[..., MemoryStore | SqliteStore],
) -> None:
    store = make_store()
    store.transact(merge(ServerList((peer(1),))))
    left = store.transact(merge(ServerList((), (peer(1, NOW + 5),))))
    stale = store.transact(merge(ServerList((peer(1, NOW + 1),))))
    assert left.left == [peer(1, NOW + 5)] and not stale
    assert store.transact(lambda m: m.peers(online=False)) == [peer(1, NOW + 5)]


def test_host_flags_are_kept(make_store: Callable[..., MemoryStore | SqliteStore]) -> None:
    store = make_store()

    def go(m: Membership) -> None:
        m.running, m.control_online = True, False
        m.heartbeat(NOW + 1, 101.0)

    store.transact(go)
    assert store.transact(lambda m: (m.running, m.control_online, m.self_entry.online)) == (
        True,
        False,
        False,
    )


def test_purged_records_are_gone(make_store: Callable[..., MemoryStore | SqliteStore]) -> None:
    store = make_store()
    store.transact(merge(ServerList((), (peer(1, NOW - DAY + 10),))))
    purged = store.transact(lambda m: m.cleanup(NOW + 20, DAY))
    assert purged.purged == [peer(1, NOW - DAY + 10)]
    assert store.transact(lambda m: list(m.entries)) == [ME]


def test_concurrent_read_modify_writes_are_atomic(
    make_store: Callable[..., MemoryStore | SqliteStore],
) -> None:
    store = make_store()

    def work() -> None:
        for _ in range(25):
            store.transact(add_next)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    names = store.transact(lambda m: set(m.entries) - {ME})
    assert names == {f"http://p{n}.test/" for n in range(1, 201)}


def test_usable_after_reset_after_fork(
    make_store: Callable[..., MemoryStore | SqliteStore],
) -> None:
    store = make_store()
    store.transact(merge(ServerList((peer(1),))))
    store.reset_after_fork()
    assert store.transact(lambda m: peer(1).base_url in m.entries)


# -- the shared file ----------------------------------------------------------------


def sqlite(path: Path, host_id: str | None = "run-1", base_url: str = ME) -> SqliteStore:
    return SqliteStore(str(path), Membership(base_url, False, NOW, 100.0), host_id=host_id)


def test_workers_share_one_table_and_its_flags(tmp_path: Path) -> None:
    one, two = sqlite(tmp_path / "s"), sqlite(tmp_path / "s")
    assert one.transact(merge(ServerList((peer(1),)))).joined == [peer(1)]
    # The other worker sees the change, and it is no transition there: signals fire once.
    assert not two.transact(merge(ServerList((peer(1),))))
    two.transact(lambda m: setattr(m, "control_online", False))
    assert one.transact(lambda m: m.control_online) is False
    # Incremental reloads and full ones (after a purge) both track the other process.
    two.transact(merge(ServerList((peer(2),), (peer(3, NOW - DAY + 10),))))
    assert one.transact(lambda m: set(m.entries)) == {ME, *(peer(n).base_url for n in (1, 2, 3))}
    one.transact(lambda m: m.cleanup(NOW + 20, DAY))
    assert two.transact(lambda m: set(m.entries)) == {ME, peer(1).base_url, peer(2).base_url}


def test_a_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    one, two = sqlite(tmp_path / "s"), sqlite(tmp_path / "s")

    def fail(m: Membership) -> None:
        m.merge(ServerList((peer(1),)), NOW, 100.0, SKEW, DAY)
        raise RuntimeError("receiver bug")

    with pytest.raises(RuntimeError):
        one.transact(fail)
    assert one.transact(lambda m: set(m.entries)) == {ME}
    assert two.transact(lambda m: set(m.entries)) == {ME}


def test_a_new_run_of_the_host_starts_afresh(tmp_path: Path) -> None:
    old = sqlite(tmp_path / "s", host_id="1234:100")
    old.transact(merge(ServerList((peer(1),))))
    old.transact(lambda m: setattr(m, "control_online", False))
    same_run = sqlite(tmp_path / "s", host_id="1234:100")
    assert same_run.transact(lambda m: (set(m.entries), m.control_online)) == (
        {ME, peer(1).base_url},
        False,
    )
    new_run = sqlite(tmp_path / "s", host_id="1234:999")
    assert new_run.transact(lambda m: (set(m.entries), m.control_online)) == ({ME}, True)


def test_processes_read_modify_write_atomically(tmp_path: Path) -> None:
    path = tmp_path / "s"
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_sqlite_store import add_next, sqlite
store = sqlite({str(path)!r})
for _ in range(50):
    store.transact(add_next)
"""
    workers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [w.wait(60) for w in workers] == [0, 0, 0, 0]
    names = sqlite(path).transact(lambda m: set(m.entries) - {ME})
    assert names == {f"http://p{n}.test/" for n in range(1, 201)}


def test_a_store_used_before_fork_works_in_parent_and_child(tmp_path: Path) -> None:
    path = tmp_path / "s"
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_sqlite_store import add_next, sqlite
store = sqlite({str(path)!r})
store.transact(add_next)
pid = os.fork()
if pid == 0:
    store.reset_after_fork()  # what the extension's at-fork hook does
    for _ in range(20):
        store.transact(add_next)
    os._exit(0)
for _ in range(20):
    store.transact(add_next)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 0
    names = sqlite(path).transact(lambda m: set(m.entries) - {ME})
    assert names == {f"http://p{n}.test/" for n in range(1, 42)}


def test_the_state_file_is_private(tmp_path: Path) -> None:
    store = sqlite(tmp_path / "s")
    store.transact(merge(ServerList((peer(1),))))
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o600
    os.symlink(tmp_path / "s", tmp_path / "link")
    with pytest.raises(ConfigError, match="SHAZBOT_STATE_PATH"):
        sqlite(tmp_path / "link")


def test_the_default_path_is_per_base_url_in_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    one, other = default_state_path(ME), default_state_path("http://127.0.0.1:9001/")
    assert one == default_state_path(ME) and one != other
    assert Path(one).parent == tmp_path


def test_a_deleted_file_is_recreated_with_every_process_news(tmp_path: Path) -> None:
    one, two = sqlite(tmp_path / "s"), sqlite(tmp_path / "s")
    one.transact(merge(ServerList((peer(1),))))
    assert two.transact(lambda m: peer(1).base_url in m.entries)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 's'}{suffix}").unlink(missing_ok=True)
    # The first process to notice recreates the file from its table, then takes a control request.
    one.transact(lambda m: setattr(m, "control_online", False))
    assert (tmp_path / "s").exists()
    # The other moves to the new file: it keeps the control state and adds what it knew.
    two_news = two.transact(lambda m: (m.control_online, set(m.entries)))
    assert two_news == (False, {ME, peer(1).base_url})
    # A fresh process (a recycled worker) joins the same table.
    assert sqlite(tmp_path / "s").transact(lambda m: (m.control_online, set(m.entries))) == two_news


def test_another_nodes_live_file_is_refused(tmp_path: Path) -> None:
    from flask_clustershazbot.host_state import run_id

    live = run_id(os.getpid())
    sqlite(tmp_path / "s", host_id=live).transact(merge(ServerList((peer(1),))))
    with pytest.raises(ConfigError, match="SHAZBOT_STATE_PATH .* another node, " + ME):
        sqlite(tmp_path / "s", host_id="999999:1", base_url="http://127.0.0.1:9001/").transact(
            lambda m: None
        )
    # A file left by a run that ended is taken over.
    sqlite(tmp_path / "t", host_id="999999:1").transact(lambda m: None)
    assert sqlite(tmp_path / "t", host_id=live, base_url="http://127.0.0.1:9001/").transact(
        lambda m: set(m.entries)
    ) == {"http://127.0.0.1:9001/"}


def saved_stamp(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute("SELECT last_update FROM member WHERE base_url = ?", (ME,)).fetchone()[0]
        )


def test_our_own_heartbeat_alone_is_written_at_most_once_a_second(tmp_path: Path) -> None:
    store, other = sqlite(tmp_path / "s"), sqlite(tmp_path / "s")

    def beat(now: int, online: bool = True) -> Callable[[Membership], None]:
        def go(m: Membership) -> None:
            m.running, m.control_online = True, online
            m.heartbeat(now, 200.0 + (now - NOW) / 1000)

        return go

    store.transact(beat(NOW + 10))
    assert saved_stamp(tmp_path / "s") == NOW + 10
    store.transact(beat(NOW + 500))  # only our heartbeat: kept in memory, answered from there
    assert store.transact(lambda m: m.self_entry.server.last_update) == NOW + 500
    assert saved_stamp(tmp_path / "s") == NOW + 10
    store.transact(beat(NOW + HEARTBEAT_SAVE_MS + 10))  # a second after the saved one
    assert saved_stamp(tmp_path / "s") == NOW + HEARTBEAT_SAVE_MS + 10
    store.transact(beat(NOW + HEARTBEAT_SAVE_MS + 20, online=False))  # a change of state: at once
    assert saved_stamp(tmp_path / "s") == NOW + HEARTBEAT_SAVE_MS + 20
    assert other.transact(lambda m: m.control_online) is False
    store.transact(merge(ServerList((peer(1),))))  # a peer's change: written at once
    assert peer(1).base_url in other.transact(lambda m: set(m.entries))
