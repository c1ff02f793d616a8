"""The SQLite side of :mod:`async_nexus.journal`: the file's format, the checks made at open and
the work done on the connection. Private: the journal and its committer are its only users.

The connection is used by one thread at a time, never two at once: the journal's worker thread
opens and closes it; each group's transaction is begun and filled in the event loop's thread,
and committed there (``normal``) or in the worker thread (``full``, where the commit waits for the
disk), and the loop starts no group before the last commit is over.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JournalCorrupt, JournalError

#: Written into the database header so a journal is told apart from any other SQLite file.
APPLICATION_ID = 0x414E4A31  # "ANJ1"
#: The version of the tables below; a journal with another one is refused, never guessed at,
#: except the versions :data:`_MIGRATIONS` brings up to this one when the journal is opened.
FORMAT_VERSION = 2


@dataclass(slots=True)
class Batch:
    """Operations waiting to be written together, in one transaction.

    Kept apart by kind, so the thread writes a group with a few ``executemany`` calls, whatever
    the mix. The order between kinds does not matter inside one transaction: a seq is removed
    only after it was appended (its insert is in this batch or already stored, and inserts run
    first), and a checkpoint is the last value saved under its name.

    The rows hold no ``None`` and no ``bytes``: sqlite3 looks for an adapter for each value of
    those types it binds, which costs more than the row's insert. An event that is not scheduled
    leaves ``due`` out (NULL by default), and a body is a ``bytearray``.
    """

    #: seq -> (seq, priority, event_type, body); an event removed before its group was written
    #: is dropped from here (or from ``later``) and never reaches the disk.
    inserts: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    #: seq -> (seq, priority, due, event_type, body): events scheduled for later.
    later: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    deletes: list[int] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)
    #: id -> (id, event_type, reason, exception, message, attempts, handler, at, body): dead
    #: letters; one removed before its group was written is dropped from here.
    dead: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    #: ids of dead letters to remove (replayed or deleted).
    dead_deletes: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.inserts or self.deletes or self.later or self.checkpoints or self.dead or self.dead_deletes
        )

    def __len__(self) -> int:
        return (
            len(self.inserts) + len(self.later) + len(self.deletes) + len(self.checkpoints)
            + len(self.dead) + len(self.dead_deletes)
        )  # fmt: skip

    def then(self, newer: Batch) -> Batch:
        """This batch followed by ``newer``, as one (a failed group going back in front)."""
        return Batch(
            {**self.inserts, **newer.inserts},
            {**self.later, **newer.later},
            self.deletes + newer.deletes,
            {**self.checkpoints, **newer.checkpoints},
            {**self.dead, **newer.dead},
            self.dead_deletes + newer.dead_deletes,
        )


@dataclass(slots=True)
class Staged:
    """What a group's transaction changed: rows of events added (net), dead letters added (net),
    and the oldest dead letters removed to keep within the bound."""

    added: int = 0
    dead_added: int = 0
    dead_trimmed: int = 0


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    """``seqs`` as runs of consecutive numbers, ``(first, last)`` each, in order.

    Events are mostly handled in the order they came, so the removals of a group fall into a
    few runs, and one ``DELETE ... BETWEEN`` a run costs about what one row's ``DELETE`` does.
    A run holds only numbers of ``seqs``: nothing else between its ends is removed.
    """
    ordered = sorted(seqs)
    found: list[tuple[int, int]] = []
    first = last = ordered[0]
    for seq in ordered:
        if seq > last + 1:
            found.append((first, last))
            first = seq
        last = seq
    found.append((first, last))
    return found


#: What the journal holds at open: its events (``seq, due, deliveries, type, body`` in replay
#: order), its checkpoints, the next free ``seq``, the number of rows, the number of dead
#: letters and the next free dead letter id.
Loaded = tuple[list[tuple[Any, ...]], dict[str, str], int, int, int, int]

#: A dead letter's columns, in the order :class:`Batch.dead` rows and the queries use.
DEAD_COLUMNS = "id, event_type, reason, exception, message, attempts, handler, at, body"

# AUTOINCREMENT for dead letters (written rarely): an id deleted is never given out again, even
# after a restart, so an id an operator noted down never names another dead letter.
_DEAD_LETTERS_TABLE = """
CREATE TABLE journal_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type,
    reason TEXT NOT NULL,
    exception TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    handler TEXT,
    at REAL NOT NULL,
    body BLOB NOT NULL
);
"""

# No AUTOINCREMENT: it would write sqlite_sequence's page in every commit, doubling the log that a
# small group writes; a seq needs to be unique only among the rows stored, and the next one is
# above them all. Journals made with it read and write the same. No index on (priority, seq): it would
# cost a b-tree write per insert and delete, and the replay order is needed once, at open.
_EVENT_TABLES = """
CREATE TABLE journal_events (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    due REAL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    event_type,
    body BLOB NOT NULL
);
CREATE TABLE journal_checkpoints (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_SCHEMA = _EVENT_TABLES + _DEAD_LETTERS_TABLE
_TABLES = {"journal_events", "journal_checkpoints"}

#: version -> the statements that bring a journal of that version to the next one, run in one
#: transaction when the journal is opened.
_MIGRATIONS = {1: _DEAD_LETTERS_TABLE}

# OR REPLACE makes a retried group harmless even if an earlier attempt did reach the disk.
_INSERT = "INSERT OR REPLACE INTO journal_events (seq, priority, event_type, body) VALUES (?, ?, ?, ?)"
_INSERT_LATER = (
    "INSERT OR REPLACE INTO journal_events (seq, priority, due, event_type, body) VALUES (?, ?, ?, ?, ?)"
)
_DELETE_RUN = "DELETE FROM journal_events WHERE seq BETWEEN ? AND ?"
_CHECKPOINT = "INSERT OR REPLACE INTO journal_checkpoints (name, value) VALUES (?, ?)"
_INSERT_DEAD = (
    f"INSERT OR REPLACE INTO journal_dead_letters ({DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_DEAD = "DELETE FROM journal_dead_letters WHERE id = ?"
_TRIM_DEAD = (  # the oldest: ids only grow
    "DELETE FROM journal_dead_letters WHERE id IN (SELECT id FROM journal_dead_letters ORDER BY id LIMIT ?)"
)

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
_CODES_BY_MESSAGE = {  # Python 3.10 does not expose the error code
    "database or disk is full": _SQLITE_FULL,
    "database disk image is malformed": _SQLITE_CORRUPT,
    "file is not a database": _SQLITE_NOTADB,
}


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc``, or None when it is not a SQLite error."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    return _CODES_BY_MESSAGE.get(str(exc))


def is_full(exc: BaseException) -> bool:
    """True when ``exc`` means the journal could not grow: SQLITE_FULL or an OSError."""
    return isinstance(exc, OSError) or sqlite_code(exc) == _SQLITE_FULL


def corrupt(path: Path, what: str, todo: str = "") -> JournalCorrupt:
    """A :class:`JournalCorrupt` for ``path`` that says what is wrong and what to do."""
    todo = todo or (
        f"Move {path.name} (with any {path.name}-wal and {path.name}-shm next to it) aside, keeping "
        "it: it may hold events that were never handled; the next open then creates a new, empty "
        "journal in its place"
    )
    return JournalCorrupt(
        f"the journal {path} {what}. It was not opened and nothing in it was changed. {todo}"
    )


# macOS has no fdatasync(); fsync() does the same there, and a little more.
_fdatasync = getattr(os, "fdatasync", os.fsync)


def _fsync_path(path: Path | str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """The journal's SQLite connection and all the work done with it."""

    def __init__(self, path: Path, synchronous: str, max_page_count: int | None, dead_max: int) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_page_count = max_page_count
        #: How many dead letters are kept; past it the oldest are removed.
        self.dead_max = dead_max
        self.conn: sqlite3.Connection | None = None

    # -- open ----------------------------------------------------------------------------------

    def open(self) -> Loaded:
        """Open (or create) the journal, check it, and return what it holds."""
        path = self.path
        if not os.path.lexists(path):
            self._create()
        elif path.is_file() and path.stat().st_size == 0:
            raise corrupt(path, "is an empty file (0 bytes), not a journal")
        try:
            conn = sqlite3.connect(
                "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        try:
            loaded = self._check_and_load(conn)
        except sqlite3.Error as exc:
            conn.close()
            if sqlite_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise corrupt(path, f"is damaged or not a SQLite database ({exc})") from exc
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return loaded

    def _check_and_load(self, conn: sqlite3.Connection) -> Loaded:
        path = self.path
        # Who wrote the file is checked before anything (WAL mode included) is written to it.
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id != APPLICATION_ID or not _TABLES <= tables:
            listed = ", ".join(sorted(tables)) or "none"
            raise corrupt(
                path,
                f"is a SQLite database but not an Async Nexus journal (application_id {app_id:#x}, "
                f"tables: {listed})",
                f"Give the journal a path of its own, or move {path.name} aside if it is not needed",
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != FORMAT_VERSION and version not in _MIGRATIONS:
            raise corrupt(
                path, f"has format version {version}; this version of Async Nexus reads {FORMAT_VERSION}"
            )
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise corrupt(path, "fails SQLite's integrity check: " + "; ".join(problems[:3]))
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(
                f"the journal {path} cannot use write-ahead logging (journal_mode stays {mode}); "
                "put it on a local file system"
            )
        self._migrate(conn, version)
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        if self.max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count={int(self.max_page_count)}")
        rows = conn.execute(
            "SELECT seq, due, deliveries, event_type, body FROM journal_events ORDER BY priority, seq"
        ).fetchall()
        checkpoints = {str(n): str(v) for n, v in conn.execute("SELECT name, value FROM journal_checkpoints")}
        last = max((int(row[0]) for row in rows), default=0)
        dead = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM journal_dead_letters").fetchone()
        given = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal_dead_letters'").fetchone()
        next_dead = max(int(dead[1]), int(given[0]) if given else 0) + 1
        return rows, checkpoints, last + 1, len(rows), int(dead[0]), next_dead

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring a journal of an older format ``version`` to :data:`FORMAT_VERSION`, in one
        transaction: a crash meanwhile leaves it as it was."""
        if version == FORMAT_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            while version != FORMAT_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _create(self) -> None:
        """Create a new journal at ``path`` atomically: built aside, then renamed into place.

        So a crash while creating leaves no half-made journal (an empty file at ``path`` would
        be refused as corrupt at the next open, rightly for anyone else's empty file).
        """
        path = self.path
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise corrupt(
                path,
                f"does not exist but its write-ahead log {wal.name} does: it may hold committed "
                f"events. Put {path.name} back, or move {wal.name} aside to start a new journal",
            )
        Path(f"{path}-shm").unlink(missing_ok=True)  # stale index of a WAL that is gone
        new = path.with_name(path.name + "-new")
        for leftover in (new, *(Path(f"{new}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)  # a creation that crashed; the lock says it was ours
        try:
            conn = sqlite3.connect(new, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(
                    f"BEGIN; PRAGMA application_id={APPLICATION_ID}; "
                    f"PRAGMA user_version={FORMAT_VERSION}; {_SCHEMA} COMMIT;"
                )
            finally:
                conn.close()
            _fsync_path(new, os.O_RDWR)
            os.replace(new, path)
            _fsync_path(path.parent)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot create the journal {path}: {exc}") from exc

    # -- the thread's work -----------------------------------------------------------------------

    def mark_delivered(self) -> None:
        """Count one more delivery for every stored event, durably."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE journal_events SET deliveries = deliveries + 1")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def write(self, batch: Batch) -> tuple[Staged, float]:
        """Write ``batch`` in one transaction; return what it changed and the seconds it took."""
        start = time.perf_counter()
        staged = self.stage(batch)
        return staged, time.perf_counter() - start + self.commit()

    def stage(self, batch: Batch) -> Staged:
        """Begin a transaction and make ``batch``'s changes in it; return what it changed.

        Past ``dead_letters_max`` dead letters, the oldest are removed in the same transaction.

        No waiting for the disk here: the pages change in SQLite's cache, and :meth:`commit`
        writes them out. On a failure the transaction is rolled back, and nothing changed.
        """
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            added = conn.executemany(_INSERT, batch.inserts.values()).rowcount if batch.inserts else 0
            if batch.later:
                added += conn.executemany(_INSERT_LATER, batch.later.values()).rowcount
            if batch.deletes:
                added -= conn.executemany(_DELETE_RUN, runs(batch.deletes)).rowcount
            if batch.checkpoints:
                conn.executemany(_CHECKPOINT, batch.checkpoints.items())
            if batch.dead or batch.dead_deletes:
                return self._stage_dead(conn, batch, added)
        except BaseException:
            self._rollback(conn)
            raise
        return Staged(added)

    def _stage_dead(self, conn: sqlite3.Connection, batch: Batch, added: int) -> Staged:
        dead_added = trimmed = 0
        if batch.dead:
            dead_added = conn.executemany(_INSERT_DEAD, batch.dead.values()).rowcount
        if batch.dead_deletes:
            dead_added -= conn.executemany(_DELETE_DEAD, [(i,) for i in batch.dead_deletes]).rowcount
        if batch.dead:
            over = conn.execute("SELECT count(*) FROM journal_dead_letters").fetchone()[0] - self.dead_max
            if over > 0:
                trimmed = conn.execute(_TRIM_DEAD, (over,)).rowcount
        return Staged(added, dead_added, trimmed)

    # -- reading dead letters (in the loop's thread, between groups) ----------------------------

    def dead_letters(self, limit: int, event_type: Any) -> list[tuple[Any, ...]]:
        """The newest ``limit`` dead letters (of ``event_type`` unless None), newest first."""
        query = f"SELECT {DEAD_COLUMNS} FROM journal_dead_letters"
        if event_type is None:
            return self._conn().execute(query + " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        query += " WHERE event_type = ? ORDER BY id DESC LIMIT ?"
        return self._conn().execute(query, (event_type, limit)).fetchall()

    def dead_letters_by_id(self, ids: list[int] | None) -> list[tuple[Any, ...]]:
        """The dead letters with these ids (every one if None) that exist, oldest first."""
        return self._select_by_id(DEAD_COLUMNS, ids)

    def dead_letter_ids(self, ids: list[int] | None) -> list[int]:
        """The ids of ``ids`` held (every one if None), in order."""
        return [int(row[0]) for row in self._select_by_id("id", ids)]

    def _select_by_id(self, columns: str, ids: list[int] | None) -> list[tuple[Any, ...]]:
        conn = self._conn()
        query = f"SELECT {columns} FROM journal_dead_letters"
        if ids is None:
            return conn.execute(query + " ORDER BY id").fetchall()
        found: list[tuple[Any, ...]] = []
        # Each id once: a copy in another query would find its row again, and act on it twice.
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):  # SQLite's limit on parameters is 999 at least
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += conn.execute(f"{query} WHERE id IN ({marks})", chunk).fetchall()
        return sorted(found, key=lambda row: int(row[0]))

    def commit(self) -> float:
        """Commit the transaction :meth:`stage` began (at ``full``, a sync); return its seconds.

        On a failure the transaction is rolled back whole.
        """
        conn = self._conn()
        start = time.perf_counter()
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return time.perf_counter() - start

    def flush_log(self) -> None:
        """Write the write-ahead log out to the disk (at ``normal``, ahead of SQLite's checkpoint).

        At ``normal`` SQLite syncs the log only when a commit copies it into the database, every
        1,000 pages or so; that commit then waits for everything written since. Syncing from
        this thread now and then, while the loop goes on, leaves that commit little to wait for.
        """
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no log yet, or closed: nothing to write out
        try:
            _fdatasync(fd)
        finally:
            os.close(fd)

    def set_max_page_count(self, pages: int) -> int:
        """Limit the database's size in pages (tests use it to fill the "disk")."""
        return int(self._conn().execute(f"PRAGMA max_page_count={int(pages)}").fetchone()[0])

    def close(self) -> None:
        """Close the connection; SQLite checkpoints the WAL into the database file first."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise JournalError(f"the journal {self.path} is not open")
        return self.conn

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite rolls some failures (SQLITE_FULL among them) back by itself.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
