"""The member table in a SQLite file shared by every process of one host (gunicorn workers).

Same interface as :class:`~flask_clustershazbot.store.MemoryStore`: ``transact(fn)``
runs ``fn`` on the table inside one ``BEGIN IMMEDIATE`` transaction, so a
read-modify-write by one worker is atomic against all others. Each process keeps
the table it loaded in memory and, at the start of a transaction, reads only the
rows other processes changed since (every row carries the generation that wrote
it); after ``fn`` it writes back only the rows :class:`Membership` marked dirty.
Deletions (purges, rare) bump a second counter that forces a full reload.

The host's ``running`` and ``control_online`` flags live in the file too, so a
control request taken by any worker takes the whole host offline. So does the
host's base URL: two hosts (different base URLs) pointed at one file are refused
while the other runs, instead of resetting each other's table forever.

A file deleted or replaced while the host runs (a tmp cleaner) is noticed at the
next transaction of each process: it reads the last state from the old file it
still holds open, then moves to a new file and writes its table there (records by
the merge rule, so that every process's latest news survives).

SQLite connections must not cross ``fork()``: the store closes its connection
before every fork (``os.register_at_fork``) and opens a new one on first use.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from .entries import Entry
from .errors import ConfigError
from .host_state import create_private_file, parent_of, pid_of, run_alive
from .membership import Membership
from .records import GossipServer
from .store import Store

log = logging.getLogger("flask_clustershazbot")
T = TypeVar("T")

#: Seconds a transaction waits for another process's write lock before failing.
BUSY_TIMEOUT = 30.0
#: When nothing but our own heartbeat changed, the file gets it at most this often (ms):
#: every gossip request beats, and writing each beat was most of a request's cost under
#: gunicorn (docs/performance.md). Any other change, ours or a peer's, is written at once.
HEARTBEAT_SAVE_MS = 1000

#: ``member.online`` of an online hint (Entry.hint): 0 offline, 1 online, 2 online hint.
ONLINE_HINT = 2

#: Bumped when the tables change shape: a file of another version is started afresh.
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS member (
    base_url TEXT PRIMARY KEY,
    monitor INTEGER NOT NULL,
    last_update INTEGER NOT NULL,
    online INTEGER NOT NULL,
    seen REAL NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS member_generation ON member (generation);
CREATE TABLE IF NOT EXISTS host (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    host_id TEXT,
    base_url TEXT NOT NULL,
    running INTEGER NOT NULL,
    control_online INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    purges INTEGER NOT NULL
);
"""


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class SqliteStore(Store):
    """The host's table in a SQLite file (WAL mode), one transaction per read-modify-write.

    ``host_id`` names one run of the host (the gunicorn master's :func:`run_id`):
    a file left by an earlier run is reset on first use instead of resurrecting
    its peers, control state and staleness clocks. A file of another base URL
    whose run still goes on (or, without ``host_id``, any file of another base
    URL) is refused with a :class:`ConfigError`.
    """

    exact = False  # other processes of the host change the table too

    def __init__(
        self,
        path: str,
        membership: Membership,
        host_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.host_id = host_id
        self.monotonic = monotonic
        self._membership = membership
        #: The table as this process built it: what a new run of the host starts from.
        self._initial = [(e.server, e.online, e.seen) for e in membership.entries.values()]
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        #: Generation and purge count of the file when the cached table was read; None: reload.
        self._generation: int | None = None
        self._purges = 0
        #: Device and inode of the file this process's connection opened.
        self._file: tuple[int, int] | None = None
        #: Set when the file was deleted or replaced: write our table into the new one.
        self._recovering = False
        #: False while the cached table may hold a failed transaction's half-made changes.
        self._cache_ok = True
        #: Our own record (lastUpdate, online) as this process last wrote it; None: unknown.
        self._saved_self: tuple[int, bool] | None = None
        #: The pid of the master that took this host over from ours (a binary upgrade), if any.
        self.successor: int | None = None
        create_private_file(path)
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: _close_before_fork(ref))

    # -- connection ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            if self._file is not None and _file_id(self.path) == self._file:
                return self._conn
            self._leave_lost_file(self._conn)
        # A connection inherited through fork is dropped unused, never closed here.
        create_private_file(self.path)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self._file = _file_id(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # soft state: a lost last write is re-learned
        conn.execute("PRAGMA journal_size_limit=4194304")  # the WAL is rewritten all the time
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute("DROP TABLE IF EXISTS member")
                conn.execute("DROP TABLE IF EXISTS host")
            for statement in _SCHEMA.split(";"):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn, self._pid, self._generation = conn, os.getpid(), None
        return conn

    def _leave_lost_file(self, conn: sqlite3.Connection) -> None:
        """The file was deleted or replaced: read the last state from the old one (still
        open), then let the next connection write it into the new file."""
        log.warning(
            "SHAZBOT_STATE_PATH %s was deleted or replaced while in use; recreating it", self.path
        )
        try:
            conn.execute("BEGIN")
            try:
                self._load(conn)
            finally:
                conn.execute("COMMIT")
        except (sqlite3.Error, ConfigError):
            pass  # the table as last read is what we carry over
        # Safe to close: SQLite neither checkpoints nor deletes the WAL of a moved file.
        self._close()
        self._recovering = True

    def close(self) -> None:
        """Close this process's connection; the next transaction opens a new one."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._conn = None
        self._generation = None

    # -- transactions ------------------------------------------------------------

    def transact(self, fn: Callable[[Membership], T]) -> T:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                m = self._load(conn)
                flags = (m.running, m.control_online)
                result = fn(m)
                if flags != (m.running, m.control_online) or (
                    m.dirty and not self._beat_can_wait(m)
                ):
                    self._save(conn, m)
                conn.execute("COMMIT")
            except BaseException:
                self._generation = None  # the cached table may hold fn's half-made changes
                self._cache_ok = False
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _beat_can_wait(self, m: Membership) -> bool:
        """Only our own heartbeat changed, less than HEARTBEAT_SAVE_MS after the saved one."""
        saved = self._saved_self
        if saved is None or len(m.dirty) != 1 or m.base_url not in m.dirty:
            return False
        entry = m.self_entry
        return entry.online is saved[1] and entry.server.last_update - saved[0] < HEARTBEAT_SAVE_MS

    def _load(self, conn: sqlite3.Connection) -> Membership:
        m = self._membership
        m.dirty.clear()
        row = conn.execute(
            "SELECT host_id, base_url, running, control_online, generation, purges FROM host"
        ).fetchone()
        if row is None:  # a new file, or one deleted under us: it starts from our table
            return self._seed(conn) if self._cache_ok else self._reset(conn)
        host_id, base_url, running, control_online, generation, purges = row
        if base_url != m.base_url and (self.host_id is None or run_alive(host_id)):
            raise ConfigError(
                f"SHAZBOT_STATE_PATH {self.path!r} is the state of another node, {base_url}"
                + (
                    f" (gunicorn master pid {host_id.split(':')[0]}, still running)"
                    if host_id
                    else ""
                )
                + "; give every node its own SHAZBOT_STATE_PATH"
            )
        if host_id != self.host_id and not self._same_host(conn, host_id):
            return self._reset(conn)
        recovered = list(m.entries.values()) if self._recovering and self._cache_ok else None
        self._recovering = False
        cached_running = m.running
        m.running, m.control_online = bool(running), bool(control_online)
        if generation != self._generation:
            self._saved_self = None  # another process wrote: our own record is written anew
        if recovered is not None:
            # Another process recreated the file first: add what only we knew.
            m.load(self._read(conn, "SELECT * FROM member", ()))
            m.absorb(recovered)
            if cached_running and not m.running:
                m.running = True
                m.dirty.add(m.base_url)  # saves the flag with the rows
        elif self._generation is None or purges != self._purges:
            m.load(self._read(conn, "SELECT * FROM member", ()))
            self._cache_ok = True
        elif generation != self._generation:
            for entry in self._read(
                conn, "SELECT * FROM member WHERE generation > ?", (self._generation,)
            ):
                m.entries[entry.server.base_url] = entry
                m.version += 1
        if m.base_url not in m.entries:  # never lose our own record, whatever the file says
            m.entries.update(self._fresh_entries())
        self._generation, self._purges = generation, purges
        return m

    def _same_host(self, conn: sqlite3.Connection, host_id: str | None) -> bool:
        """The file names another run than ours: False if that run is over (a new run of
        the host starts afresh); True if it is ours under another master (a binary upgrade:
        one master forked the other, and both run until the old one stops); else another
        host claims our base URL, and is refused. Without a run of our own: True."""
        if self.host_id is None:
            return True
        other = pid_of(host_id) if host_id else None
        if not run_alive(host_id):
            if other is None or other != self.successor:
                return False
            # The new master stopped before the old one: the file is ours again.
            conn.execute("UPDATE host SET host_id = ?", (self.host_id,))
            self.successor = None
            return True
        if parent_of(self.host_id) == other:  # the old master's run: the file is ours now
            conn.execute("UPDATE host SET host_id = ?", (self.host_id,))
            self.successor = None
            return True
        if parent_of(host_id) == pid_of(self.host_id):  # the new master's: we are the old one
            self.successor = other
            return True
        raise ConfigError(
            f"SHAZBOT_BASE_URL {self._membership.base_url} is already served on this machine "
            f"by another host (master pid {other}) whose state is SHAZBOT_STATE_PATH "
            f"{self.path!r}: this host refuses to act for it; give each host its own "
            "SHAZBOT_BASE_URL (and SHAZBOT_STATE_PATH)"
        )

    def _read(self, conn: sqlite3.Connection, sql: str, args: tuple[int, ...]) -> list[Entry]:
        # Monotonic clocks restart at boot: a "seen" from the future restarts at now.
        mono = self.monotonic()
        return [
            Entry(
                GossipServer(url, bool(monitor), last_update),
                bool(online),
                min(seen, mono),
                hint=online == ONLINE_HINT,
            )
            for url, monitor, last_update, online, seen, _ in conn.execute(sql, args)
        ]

    def _fresh_entries(self) -> dict[str, Entry]:
        return {s.base_url: Entry(s, online, seen) for s, online, seen in self._initial}

    def _reset(self, conn: sqlite3.Connection) -> Membership:
        """A new run of the host: start from this process's fresh table."""
        m = self._membership
        m.load(self._fresh_entries().values())
        m.running, m.control_online = False, True
        return self._seed(conn)

    def _seed(self, conn: sqlite3.Connection) -> Membership:
        """Write this process's table, flags and identity as the whole file."""
        m = self._membership
        self._recovering, self._cache_ok = False, True
        conn.execute("DELETE FROM member")
        conn.execute("DELETE FROM host")
        conn.execute(
            "INSERT INTO host VALUES (0, ?, ?, ?, ?, 0, 0)",
            (self.host_id, m.base_url, m.running, m.control_online),
        )
        self._generation, self._purges, self._saved_self = 0, 0, None
        if m.base_url not in m.entries:
            m.entries.update(self._fresh_entries())
        m.dirty.update(m.entries)
        return m

    def _save(self, conn: sqlite3.Connection, m: Membership) -> None:
        assert self._generation is not None
        generation = self._generation + 1
        rows, gone = [], []
        for url in m.dirty:
            entry = m.entries.get(url)
            if entry is None:
                gone.append((url,))
            else:
                s = entry.server
                state = ONLINE_HINT if entry.hint else int(entry.online)
                rows.append((url, s.monitor, s.last_update, state, entry.seen, generation))
                if url == m.base_url:
                    self._saved_self = (s.last_update, entry.online)
        conn.executemany("INSERT OR REPLACE INTO member VALUES (?, ?, ?, ?, ?, ?)", rows)
        if gone:
            conn.executemany("DELETE FROM member WHERE base_url = ?", gone)
            self._purges += 1
        conn.execute(
            "UPDATE host SET running = ?, control_online = ?, generation = ?, purges = ?",
            (m.running, m.control_online, generation, self._purges),
        )
        self._generation = generation
        m.dirty.clear()


def _close_before_fork(ref: weakref.ref[SqliteStore]) -> None:
    store = ref()
    if store is not None and store._lock.acquire(timeout=BUSY_TIMEOUT):
        try:
            store._close()
        finally:
            store._lock.release()
