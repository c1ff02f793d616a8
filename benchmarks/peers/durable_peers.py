"""Scenario 9, durable: every implementation of it, run by ``child.py`` one task per child.

Each function moves ``n`` small events from a producer to one sync handler through a fresh
SQLite file (WAL, ``PRAGMA synchronous`` at ``synchronous``) in a new directory under
``directory``, keeps each event stored until it has been handled, and returns the seconds
from the first event to the moment the last one is handled *and* removed, with what it saw:
``handled`` (events the handler got) and ``left`` (rows still stored once it was closed).

Every implementation stores the same bytes, the :class:`~async_nexus.codec.EventCodec` JSON of
the event, encoded inside the timed part; the peers decode them again for the handler.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, cast

import async_nexus
from async_nexus import AsyncEventNexus, Event
from async_nexus.codec import EventCodec

from .work import Countdown

NAME = "durable"
UNSUPPORTED: dict[str, str] = {}

#: The events' type; their payload is a small reading, as a sensor daemon would get.
TYPE = "reading"
#: How often (in events) the peers delete the events they acknowledged: persist-queue keeps
#: acknowledged rows until ``clear_acked_data()``, litequeue its done ones until ``prune()``.
PRUNE_EVERY = 100

_CODEC = EventCodec()
_SYNCHRONOUS = {"full": 2, "normal": 1}  # what PRAGMA synchronous reads back


def version() -> str:
    return f"async-nexus {async_nexus.__version__}, SQLite {sqlite3.sqlite_version}"


def reading(i: int) -> Event:
    """The event number ``i``: about 110 bytes once encoded."""
    return Event(i, TYPE, 0, {"sensor": "t-17", "value": 21.5})


def _fresh(directory: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="run-", dir=directory))


def _set_synchronous(conn: sqlite3.Connection, synchronous: str) -> None:
    """Set ``PRAGMA synchronous`` on ``conn`` and check it took, and that the file is in WAL mode."""
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if level != _SYNCHRONOUS[synchronous] or str(mode).lower() != "wal":
        raise RuntimeError(f"wanted WAL at synchronous={synchronous}, got {mode} at {level}")


def _rows(path: Path, table: str) -> int:
    """How many rows ``table`` of the closed database ``path`` still holds."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


class _Handler:
    """The one sync handler: it counts the events it gets."""

    __slots__ = ("handled",)

    def __init__(self) -> None:
        self.handled = 0

    def __call__(self, event: Event, queue: Any = None) -> None:
        self.handled += 1


# -- async-nexus ---------------------------------------------------------------------------------


class _Hub:
    """A nexus on a fresh journal, with the one sync handler registered and the loop started."""

    def __init__(self, n: int, synchronous: str, directory: str) -> None:
        from async_nexus.journal import SqliteJournal

        self.path = _fresh(directory) / "journal.db"
        level: Literal["full", "normal"] = "full" if synchronous == "full" else "normal"
        self.journal = SqliteJournal(self.path, synchronous=level)
        self.nexus = AsyncEventNexus(journal=self.journal)
        self.count, self.handler = Countdown(n), _Handler()

        def handle(event: Event, queue: Any) -> None:
            self.handler(event)
            self.count.hit()

        self.nexus.add_handler(TYPE, handle)
        self.task = self.nexus.start()

    async def settled(self) -> dict[str, Any]:
        """Once every event was handled and the last removals are on disk: the journal's figures.

        Nothing is staged and no group is being written by then; the nexus is then stopped.
        """
        await self.count.wait()
        journal = self.journal
        while journal.pending_commit():
            await journal.commit()
        stats = journal.stats()
        return {
            "group": float(stats["events_per_commit"]),
            "commits": float(stats["commits"]),
            "longest_commit_s": float(stats["longest_commit_s"]),
            "longest_loop_stall_s": float(stats["longest_loop_stall_s"]),
        }

    async def close(self) -> dict[str, int]:
        self.nexus.stop()
        await self.task
        return {"handled": self.handler.handled, "left": _rows(self.path, "journal_events")}


async def nexus(n: int, synchronous: str, directory: str, producers: int) -> dict[str, Any]:
    """``producers`` tasks, each awaiting ``ingest()`` of its share of the events in turn.

    An ``await ingest()`` returns once its event is durable, so the events of all the
    producers waiting meanwhile share one group commit.
    """
    hub = _Hub(n, synchronous, directory)
    ingest = hub.nexus.ingest

    async def produce(first: int) -> None:
        for i in range(first, n, producers):
            await ingest(reading(i))

    started = perf_counter()
    await asyncio.gather(*(produce(k) for k in range(min(producers, n))))
    figures = await hub.settled()
    seconds = perf_counter() - started
    return {"seconds": seconds, **figures, **await hub.close()}


async def nexus_latency(
    n: int, rate: float, synchronous: str, directory: str, producers: int
) -> dict[str, Any]:
    """The producers of :func:`nexus`, paced so that together they offer ``rate`` events per
    second; how long each ``await ingest()`` took: p50, p99 and max in milliseconds.

    Event ``i`` is due ``i / rate`` seconds after the start, on the loop clock; the producer
    whose turn it is sleeps until then, or sends at once when its previous ingest kept it
    past that moment. How far behind the schedule the sends started (``lag``, p99 and max)
    tells whether the pace was held.
    """
    hub = _Hub(n, synchronous, directory)
    ingest = hub.nexus.ingest
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    lags: list[float] = []

    async def produce(first: int) -> None:
        for i in range(first, n, producers):
            ahead = start + i / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
            event = reading(i)
            began = perf_counter()
            await ingest(event)
            samples.append(perf_counter() - began)
            lags.append(max(0.0, -ahead))

    start = loop.time()
    await asyncio.gather(*(produce(k) for k in range(min(producers, n))))
    figures = await hub.settled()
    return {
        **_percentiles(samples),
        **_percentiles(lags, "lag_"),
        "rate": rate,
        **figures,
        **await hub.close(),
    }


def _percentiles(seconds: list[float], prefix: str = "") -> dict[str, float]:
    """p50, p99 and max of ``seconds``, in milliseconds."""
    ordered = sorted(seconds)
    last = len(ordered) - 1
    return {
        f"{prefix}p50": ordered[last // 2] * 1e3,
        f"{prefix}p99": ordered[int(last * 0.99)] * 1e3,
        f"{prefix}max": ordered[last] * 1e3,
    }


# -- the peers -----------------------------------------------------------------------------------


async def persist_queue(n: int, synchronous: str, directory: str) -> dict[str, Any]:
    """persist-queue's ``SQLiteAckQueue``: ``put``, ``get``, ``ack``, one event at a time.

    Each of the three is a transaction of its own, committed at once. Acknowledged rows
    stay until ``clear_acked_data()``, called every :data:`PRUNE_EVERY` events and at the end.
    """
    from persistqueue import SQLiteAckQueue

    where = _fresh(directory)
    queue = SQLiteAckQueue(str(where), multithreading=False, auto_resume=False)
    # One connection serves puts and gets when multithreading is off.
    _set_synchronous(cast(sqlite3.Connection, queue._putter), synchronous)
    handler = _Handler()
    encode, decode = _CODEC.encode, _CODEC.decode
    started = perf_counter()
    for i in range(n):
        queue.put(encode(reading(i)))
        item = queue.get(block=False, raw=True)
        handler(decode(item["data"]))
        queue.ack(id=item["pqid"])
        if not (i + 1) % PRUNE_EVERY:
            queue.clear_acked_data(max_delete=None, keep_latest=None)
    queue.clear_acked_data(max_delete=None, keep_latest=None)
    seconds = perf_counter() - started
    queue.close()
    return {
        "seconds": seconds,
        "handled": handler.handled,
        "left": _rows(where / "data.db", "ack_queue_default"),
    }


async def litequeue(n: int, synchronous: str, directory: str) -> dict[str, Any]:
    """litequeue's ``LiteQueue``: ``put``, ``pop``, ``done``, one event at a time.

    Each of the three commits at once (``pop`` in a transaction of its own). Done rows stay
    until ``prune()``, called every :data:`PRUNE_EVERY` events and at the end.
    """
    from litequeue import LiteQueue

    path = _fresh(directory) / "queue.db"
    queue = LiteQueue(str(path))
    _set_synchronous(queue.conn, synchronous)  # litequeue sets NORMAL itself
    handler = _Handler()
    encode, decode = _CODEC.encode, _CODEC.decode
    started = perf_counter()
    for i in range(n):
        queue.put(encode(reading(i)).decode())
        message = queue.pop()
        handler(decode(message.data))
        claim = getattr(message, "claim_id", None)  # litequeue 0.11 and later: done() takes it
        if claim is None:
            queue.done(message.message_id)
        else:
            queue.done(message.message_id, claim_id=claim)
        if not (i + 1) % PRUNE_EVERY:
            queue.prune()
    queue.prune()
    seconds = perf_counter() - started
    queue.close()
    return {"seconds": seconds, "handled": handler.handled, "left": _rows(path, '"Queue"')}


_INSERT = "INSERT INTO events (seq, body) VALUES (?, ?)"
_DELETE = "DELETE FROM events WHERE seq = ?"


async def sqlite_floor(n: int, synchronous: str, directory: str, batch: int) -> dict[str, Any]:
    """Bare ``sqlite3``: per batch of ``batch`` events, one ``executemany`` of their rows and a
    commit, the handler on each, one ``executemany`` of their deletion and a commit."""
    path = _fresh(directory) / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    _set_synchronous(conn, synchronous)
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    handler = _Handler()
    encode = _CODEC.encode
    execute: Callable[[str], Any] = conn.execute
    started = perf_counter()
    for first in range(0, n, batch):
        events = [reading(i) for i in range(first, min(n, first + batch))]
        execute("BEGIN")
        conn.executemany(_INSERT, [(event.id, encode(event)) for event in events])
        execute("COMMIT")
        for event in events:
            handler(event)
        execute("BEGIN")
        conn.executemany(_DELETE, [(event.id,) for event in events])
        execute("COMMIT")
    seconds = perf_counter() - started
    conn.close()
    return {"seconds": seconds, "handled": handler.handled, "left": _rows(path, "events"), "batch": batch}
