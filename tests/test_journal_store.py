"""The journal's durable store, on its own: real SQLite files, its real thread, real processes."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from async_nexus.codec import EventCodec
from async_nexus.errors import (
    BadCall,
    JournalCorrupt,
    JournalError,
    JournalFull,
    JournalLocked,
    NotAnEvent,
)
from async_nexus.events import Event, NamedEvent
from async_nexus.journal import REDELIVERED, JournalEntry, SqliteJournal
from async_nexus.journal import _sql as sql


class Treacle(NamedEvent):
    pass


@pytest.fixture(params=["full", "normal"])
def level(request: pytest.FixtureRequest) -> str:
    """Each synchronous level: "full" writes its groups in the journal's thread, "normal" in
    the event loop itself."""
    return str(request.param)


def opened(path: Path, **options: object) -> tuple[SqliteJournal, list[JournalEntry]]:
    journal = SqliteJournal(path, **options)  # type: ignore[arg-type]
    return journal, journal.open()


def replay(path: Path, **options: object) -> list[JournalEntry]:
    """Open the journal, return what it holds, close it again."""
    journal, entries = opened(path, **options)
    asyncio.run(journal.close())
    return entries


async def areplay(path: Path, **options: object) -> list[JournalEntry]:
    journal, entries = opened(path, **options)
    await journal.close()
    return entries


def without_redelivered(event: Event) -> Event:
    headers = dict(event.headers or {})
    headers.pop(REDELIVERED)
    return Event(event.id, event.type, event.priority, event.payload, headers or None)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.journal"


# -- what goes in comes out -------------------------------------------------------------------------


async def test_round_trip_through_close_and_reopen(path: Path) -> None:
    codec = EventCodec(named_events=[Treacle])
    due = time.time() + 60
    events = [
        Event(1001, 99, 0, "TEAPOT!"),
        Event("a-id", "sensor.temp", 3, {"celsius": 21.5, "tags": ["x", None, True]}, {"trace": "t1"}),
        Treacle(7, {"sticky": [1, 2, 3]}, priority=1, headers={"origin": "kitchen"}),
        Event(2**40, "big", -2, None),
    ]
    journal, entries = opened(path, codec=codec)
    assert entries == []
    seqs = [journal.append(e, due=due if e.id == 7 else None) for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    await journal.commit()
    await journal.close()

    entries = await areplay(path, codec=codec)
    by_seq = {entry.seq: entry for entry in entries}
    assert set(by_seq) == set(seqs)
    for seq, original in zip(seqs, events, strict=True):
        entry = by_seq[seq]
        assert type(entry.event) is type(original)
        assert entry.event.headers is not None and entry.event.headers[REDELIVERED] == "1"
        assert without_redelivered(entry.event) == Event(
            original.id, original.type, original.priority, original.payload, original.headers
        )
        assert entry.due == (due if original.id == 7 else None)
        assert entry.deliveries == 1
    assert isinstance(by_seq[seqs[2]].event, Treacle)


async def test_replay_order_is_priority_then_arrival(path: Path) -> None:
    journal, _ = opened(path)
    priorities = [5, 0, 5, -1, 0, 5, -1]
    for index, priority in enumerate(priorities):
        journal.append(Event(index, "t", priority))
    await journal.close()
    entries = await areplay(path)
    assert [e.event.id for e in entries] == [3, 6, 1, 4, 0, 2, 5]
    assert [e.seq for e in entries] == sorted((e.seq for e in entries), key=lambda s: (priorities[s - 1], s))


def test_each_open_counts_one_more_delivery(path: Path) -> None:
    journal, _ = opened(path)
    journal.append(Event(1, "t", 0, headers={"keep": "me"}))
    asyncio.run(journal.close())
    for count in (1, 2, 3):
        [entry] = replay(path)
        assert entry.deliveries == count
        assert entry.event.id == 1
        assert entry.event.headers == {"keep": "me", REDELIVERED: str(count)}


async def test_remove_drops_an_event_and_new_seqs_come_after_those_stored(path: Path) -> None:
    journal, _ = opened(path)
    first, second, third = (journal.append(Event(i, "t")) for i in range(3))
    await journal.commit()
    journal.remove(second)
    await journal.commit()
    assert journal.stats()["rows"] == 2
    with pytest.raises(ValueError, match="never stored"):
        journal.remove(third + 100)
    journal.remove(first)
    await journal.close()
    journal, entries = opened(path)
    assert [entry.seq for entry in entries] == [third]
    fourth = journal.append(Event(9, "t"))
    assert fourth > third  # after every stored event, so the replay order holds
    journal.remove(third)
    journal.remove(fourth)
    await journal.close()
    journal, entries = opened(path)
    assert entries == []
    await journal.close()


async def test_removals_out_of_order_and_with_gaps_remove_just_those(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    seqs = [journal.append(Event(i, "t")) for i in range(40)]
    later = journal.append(Event(40, "t"), due=time.time() + 3600)
    await journal.commit()
    gone = {seqs[i] for i in (0, 1, 2, 5, 7, 8, 9, 20, 39)} | {later}
    for seq in sorted(gone, reverse=True):  # the journal sorts them into runs
        journal.remove(seq)
    journal.remove(seqs[2])  # twice: harmless
    await journal.commit()
    assert journal.stats()["rows"] == 40 - 9
    await journal.close()
    journal, entries = opened(path, synchronous=level)
    assert [entry.seq for entry in entries] == [seq for seq in seqs if seq not in gone]
    await journal.close()


def test_runs_of_consecutive_seqs() -> None:
    assert sql.runs([7]) == [(7, 7)]
    assert sql.runs([9, 1, 2, 3, 5, 6, 3]) == [(1, 3), (5, 6), (9, 9)]
    assert sql.runs(list(range(100, 0, -1))) == [(1, 100)]


async def test_checkpoints_are_read_back_staged_and_committed(path: Path) -> None:
    journal, _ = opened(path)
    assert journal.checkpoint("tail") is None
    journal.save_checkpoint("tail", "100")
    assert journal.checkpoint("tail") == "100"  # staged
    await journal.commit()
    journal.save_checkpoint("tail", "200")
    await journal.close()
    journal, _ = opened(path)
    assert journal.checkpoint("tail") == "200"
    with pytest.raises(TypeError):
        journal.save_checkpoint("tail", 300)  # type: ignore[arg-type]
    await journal.close()


def test_a_commit_holds_events_and_checkpoint_through_a_crash(path: Path, level: str) -> None:
    done = run_python(
        """
        import asyncio, os, sys
        from async_nexus.events import Event
        from async_nexus.journal import SqliteJournal

        journal = SqliteJournal(sys.argv[1], synchronous=sys.argv[2])
        journal.open()

        async def main():
            for line in range(5):
                journal.append(Event(line, "line", 0, f"line {line}"))
            journal.save_checkpoint("tail", "5")
            await journal.commit()
            journal.append(Event(5, "line", 0, "staged, never committed"))
            journal.save_checkpoint("tail", "6")
            os._exit(0)  # a crash: no close(), no flush, the lock dies with the process

        asyncio.run(main())
        """,
        str(path),
        level,
    )
    assert done.returncode == 0, done.stderr
    assert Path(f"{path}-wal").stat().st_size > 0  # the commit is only in the log: no close ran
    journal, entries = opened(path, synchronous=level)
    assert [e.event.payload for e in entries] == [f"line {i}" for i in range(5)]
    assert journal.checkpoint("tail") == "5"
    asyncio.run(journal.close())


# -- group commit ---------------------------------------------------------------------------------


async def test_many_appends_and_one_commit_make_few_groups(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    seqs = [journal.append(Event(i, "t", 0, {"n": i})) for i in range(1000)]
    assert journal.pending_commit()
    await journal.commit()
    assert not journal.pending_commit()
    stats = journal.stats()
    assert stats["rows"] == 1000
    assert stats["commits"] == 1  # all staged before the first group ran: one group
    assert stats["events_per_commit"] == stats["ops_per_commit"] == 1000
    assert stats["longest_commit_s"] > 0 and stats["longest_loop_stall_s"] > 0
    if level == "normal":  # the loop wrote the group itself: its stall holds the whole commit
        assert stats["longest_loop_stall_s"] >= stats["longest_commit_s"]
    for seq in seqs:
        journal.remove(seq)
    await journal.commit()
    assert journal.stats()["rows"] == 0
    await journal.close()


async def test_concurrent_committers_share_groups(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    durable: list[int] = []

    async def ingest(i: int) -> None:
        seq = journal.append(Event(i, "t"))
        await journal.commit()
        durable.append(seq)

    await asyncio.gather(*(ingest(i) for i in range(300)))
    stats = journal.stats()
    assert len(durable) == 300 and stats["rows"] == 300
    assert stats["commits"] < 100, stats
    await journal.close()
    assert len(await areplay(path)) == 300


async def test_at_normal_the_thread_writes_the_log_out_while_the_loop_goes_on(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    for i in range(200):
        journal.append(Event(i, "t"))
        await journal.commit()  # one group each
    assert journal.stats()["commits"] == 200
    if level == "normal":
        await wait_until(lambda: journal.stats()["log_flushes"] >= 1)
        assert journal.stats()["log_flushes"] <= 200 // 64
    else:  # at full every commit syncs the log itself
        assert journal.stats()["log_flushes"] == 0
    await journal.close()


async def test_commit_waits_for_the_group_in_flight(path: Path) -> None:
    journal, _ = opened(path)
    await journal.commit()  # nothing staged: returns at once
    journal.append(Event(1, "t"))
    await asyncio.sleep(0)  # the committer has taken the group: nothing staged, one in flight
    assert journal._groups._writing is not None
    await journal.commit()
    assert not journal.pending_commit() and journal.stats()["rows"] == 1
    await journal.close()


def test_an_event_removed_before_its_group_never_reaches_the_disk(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    seq = journal.append(Event(1, "t"))  # no loop runs yet: staged, no group started

    async def main() -> None:
        waiter = asyncio.create_task(journal.commit())
        await asyncio.sleep(0)  # the waiter now waits for the group that would hold the event
        journal.remove(seq)
        await asyncio.wait_for(waiter, 10)
        assert not journal.pending_commit() and journal.stats()["commits"] == 0
        await journal.close()

    asyncio.run(main())
    assert replay(path) == []


def test_a_cancelled_commit_leaves_the_group_to_the_others(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    journal.append(Event(1, "t"))  # no loop runs yet: staged, no group started

    async def main() -> None:
        first = asyncio.create_task(journal.commit())
        second = asyncio.create_task(journal.commit())
        await asyncio.sleep(0)  # both wait for the group that holds the event
        first.cancel()
        await second
        assert first.cancelled() and journal.stats()["rows"] == 1
        await journal.close()

    asyncio.run(main())


async def test_an_append_nobody_awaits_becomes_durable(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    journal.append(Event(1, "t", 0, "fire and forget"))
    journal.save_checkpoint("where", "1")
    await wait_until(lambda: not journal.pending_commit())
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert reader.execute("SELECT count(*) FROM journal_events").fetchone() == (1,)
        assert reader.execute("SELECT value FROM journal_checkpoints").fetchone() == ("1",)
    finally:
        reader.close()
    assert journal.stats()["commits"] == 1
    await journal.close()


async def test_close_commits_what_is_staged(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    journal.append(Event(1, "t"))
    await journal.close()
    await journal.close()  # twice is fine
    with pytest.raises(BadCall, match="closed"):
        journal.append(Event(2, "t"))
    assert [e.event.id for e in await areplay(path)] == [1]


def test_a_close_without_a_loop_writes_what_is_staged(path: Path, level: str) -> None:
    before = set(threading.enumerate())
    journal, _ = opened(path, synchronous=level)
    (thread,) = [t for t in threading.enumerate() if t not in before and t.name.startswith("async-nexus")]
    journal.append(Event(1, "t", 0, "committed by a loop that has ended"))
    asyncio.run(journal.commit())
    journal.append(Event(2, "t", 0, "staged"))  # no loop runs: staged, no group started
    journal.save_checkpoint("where", "2")
    assert journal.pending_commit()
    journal.close_without_loop()
    assert not thread.is_alive()
    journal.close_without_loop()  # twice does nothing
    with pytest.raises(BadCall, match="closed"):
        journal.append(Event(3, "t"))
    again, entries = opened(path, synchronous=level)  # unlocked
    assert [e.event.payload for e in entries] == ["committed by a loop that has ended", "staged"]
    assert again.checkpoint("where") == "2"
    asyncio.run(again.close())


async def test_a_close_without_a_loop_is_refused_while_a_group_is_in_flight(path: Path) -> None:
    journal, _ = opened(path)  # synchronous="full": the thread writes the groups
    journal.append(Event(1, "t"))
    await asyncio.sleep(0)  # the committer has taken the group: one in flight in the thread
    assert journal._groups._writing is not None
    with pytest.raises(BadCall, match=r"in use by an event loop.*await close\(\) in that loop"):
        journal.close_without_loop()
    journal.append(Event(2, "t"))  # still open
    await journal.close()
    assert [e.event.id for e in await areplay(path)] == [1, 2]


def test_a_close_without_a_loop_is_refused_while_a_commit_waits(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level)
    journal.append(Event(1, "t"))  # no loop runs yet: staged, no group started

    async def main() -> None:
        waiter = asyncio.create_task(journal.commit())
        await asyncio.sleep(0)  # the waiter asked for a group, which has not started yet
        assert journal._groups._writing is None and journal.pending_commit()
        with pytest.raises(BadCall, match=r"await close\(\) in that loop"):
            journal.close_without_loop()
        await asyncio.wait_for(waiter, 10)
        await journal.close()

    asyncio.run(main())
    assert [e.event.id for e in replay(path)] == [1]


# -- refusals -------------------------------------------------------------------------------------


async def test_an_unencodable_event_is_a_type_error_and_nothing_is_staged(path: Path) -> None:
    journal, _ = opened(path)
    before = journal.append(Event(1, "t"))
    await journal.commit()
    with pytest.raises(TypeError, match="object") as info:
        journal.append(Event(2, "t", 0, {"thing": object()}))
    assert "event 2" in str(info.value)
    with pytest.raises(TypeError, match="non-finite"):
        journal.append(Event(3, "t", 0, math.nan))
    with pytest.raises(NotAnEvent):
        journal.append("not an event")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="due"):
        journal.append(Event(4, "t"), due="tomorrow")  # type: ignore[arg-type]
    assert not journal.pending_commit()
    assert journal.append(Event(5, "t")) == before + 1  # no seq was used up
    await journal.close()
    assert [e.event.id for e in await areplay(path)] == [1, 5]


def test_bad_arguments_are_refused_at_once(path: Path) -> None:
    with pytest.raises(BadCall, match="'full' or 'normal'"):
        SqliteJournal(path, synchronous="extra")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        SqliteJournal(42)  # type: ignore[arg-type]
    journal = SqliteJournal(str(path), synchronous="normal")
    assert journal.path == path and journal.synchronous == "normal"
    assert isinstance(journal.codec, EventCodec)
    with pytest.raises(BadCall, match="open"):
        journal.append(Event(1, "t"))
    journal.open()
    with pytest.raises(BadCall, match="once"):
        journal.open()
    asyncio.run(journal.close())


def test_an_unregistered_named_event_names_the_fix(path: Path) -> None:
    journal, _ = opened(path, codec=EventCodec(named_events=[Treacle]))
    journal.append(Treacle(1, "sticky"))
    asyncio.run(journal.close())
    with pytest.raises(JournalError, match=r"'Treacle'.*EventCodec\(named_events=\[Treacle"):
        replay(path)
    [entry] = replay(path, codec=EventCodec(named_events=[Treacle]))
    assert entry.deliveries == 1  # the failed open counted no delivery


# -- files that are not a journal -----------------------------------------------------------------


def _assert_refused(path: Path) -> None:
    before = digest(path)
    for _ in range(2):  # refused again: the failed open released its lock
        with pytest.raises(JournalCorrupt) as info:
            SqliteJournal(path).open()
        assert str(path) in str(info.value) and "aside" in str(info.value)
    assert digest(path) == before


def test_random_bytes_are_refused(path: Path) -> None:
    path.write_bytes(os.urandom(16384))
    _assert_refused(path)


def test_an_empty_file_is_refused(path: Path) -> None:
    path.touch()
    _assert_refused(path)


def test_a_journal_cut_in_half_is_refused(path: Path) -> None:
    journal, _ = opened(path)
    for i in range(400):
        journal.append(Event(i, "t", 0, "x" * 1000))
    asyncio.run(journal.close())
    assert not Path(f"{path}-wal").exists()  # everything is in the database file
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size // 2)
    _assert_refused(path)


def test_another_programs_database_is_refused(path: Path) -> None:
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE users (name TEXT)")
    other.commit()
    other.close()
    _assert_refused(path)
    with pytest.raises(JournalCorrupt, match="not an Async Nexus journal.*users"):
        SqliteJournal(path).open()


def test_a_write_ahead_log_without_its_journal_is_refused(path: Path) -> None:
    Path(f"{path}-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    with pytest.raises(JournalCorrupt, match="write-ahead log"):
        SqliteJournal(path).open()
    assert not path.exists()


# -- one journal, one user ------------------------------------------------------------------------


def test_another_process_cannot_open_a_journal_in_use(path: Path) -> None:
    journal, _ = opened(path)
    try:
        done = run_python(
            """
            import sys
            from async_nexus.errors import JournalLocked
            from async_nexus.journal import SqliteJournal

            try:
                SqliteJournal(sys.argv[1]).open()
            except JournalLocked as exc:
                print(exc)
                sys.exit(3)
            """,
            str(path),
        )
        assert done.returncode == 3, done.stderr
        assert f"is in use by process {os.getpid()}" in done.stdout
        assert str(path) in done.stdout
        with pytest.raises(JournalLocked, match="this process"):
            SqliteJournal(path).open()
    finally:
        asyncio.run(journal.close())
    replay(path)  # released by close()


# -- a full disk ----------------------------------------------------------------------------------


async def test_a_full_disk_keeps_what_was_committed_and_what_was_staged(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level, _max_page_count=1_000_000)
    for i in range(3):
        journal.append(Event(i, "t", 0, "committed"))
    journal.save_checkpoint("tail", "3")
    await journal.commit()
    await journal._set_max_page_count(1)  # SQLite keeps the current size: no room to grow

    for i in range(3, 53):
        journal.append(Event(i, "t", 0, "x" * 2000))
    journal.save_checkpoint("tail", "53")
    with pytest.raises(JournalFull) as info:
        await journal.commit()
    error = info.value
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert error.filename == str(path) and error.strerror == str(error)
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert "full" in str(error) and str(path) in str(error) and not str(error).startswith("[Errno")
    assert journal.pending_commit() and journal.stats()["failed_commits"] >= 1
    assert journal.last_error is not None and journal.stats()["last_error_at"] > 0
    assert journal.stats()["rows"] == 3

    journal.append(Event(53, "t", 0, "after the failure"))
    await journal._set_max_page_count(1_000_000)
    await journal.commit()
    assert not journal.pending_commit() and journal.stats()["rows"] == 54
    await journal.close()
    journal, entries = opened(path, synchronous=level)
    assert [e.event.id for e in entries] == list(range(54))  # in order, the failed group first
    assert journal.checkpoint("tail") == "53"
    await journal.close()


async def test_a_close_that_cannot_commit_raises_and_keeps_the_committed(path: Path, level: str) -> None:
    journal, _ = opened(path, synchronous=level, _max_page_count=1_000_000)
    journal.append(Event(0, "t", 0, "committed"))
    await journal.commit()
    await journal._set_max_page_count(1)
    for i in range(1, 50):
        journal.append(Event(i, "t", 0, "x" * 2000))
    with pytest.raises(JournalFull):
        await journal.close()
    assert [e.event.id for e in await areplay(path)] == [0]  # closed and unlocked all the same


def test_a_close_without_a_loop_that_cannot_write_raises_and_keeps_the_committed(
    path: Path, level: str
) -> None:
    journal, _ = opened(path, synchronous=level, _max_page_count=1_000_000)
    journal.append(Event(0, "t", 0, "committed"))

    async def commit_and_fill_the_disk() -> None:
        await journal.commit()
        await journal._set_max_page_count(1)

    asyncio.run(commit_and_fill_the_disk())
    for i in range(1, 50):
        journal.append(Event(i, "t", 0, "x" * 2000))  # no loop runs: staged
    with pytest.raises(JournalFull) as info:
        journal.close_without_loop()
    assert str(path) in str(info.value) and info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert journal.last_error is info.value
    journal.close_without_loop()  # closed all the same: nothing more to do
    assert [e.event.id for e in replay(path)] == [0]  # and unlocked
