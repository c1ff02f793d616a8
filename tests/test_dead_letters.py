"""Dead letters: events whose handling finally failed, seen by the callback, kept, listed,
replayed and deleted; in memory, and in a journal across restarts.

The Redis transport's dead letters (the ``<stream>:dead`` stream) are in test_redis.py; the
command line is in test_dead_letters_cli.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventNexus, DeadLetter, Event, Retry, errors
from async_nexus.dead_letters import REPLAYED
from async_nexus.journal import REDELIVERED, SqliteJournal

DATA = Path(__file__).parent / "data"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition``, yielding to the loop meanwhile; fail after ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


class Dead:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException]] = []

    def __call__(self, event: Event, exc: BaseException) -> None:
        self.calls.append((event.id, exc))


async def test_a_failed_event_goes_to_the_dead_letter_callback_after_the_error_hook() -> None:
    order: list[str] = []
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: order.append(f"hook {subject.id}"))
    nexus.on_dead_letter(lambda event, exc: order.append(f"dead {event.id} {exc}"))

    @nexus.on("job")
    def fails(event: Event, queue: Any) -> None:
        raise KeyError("boom")

    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert order == ["hook 1", "dead 1 'boom'"]


async def test_an_event_no_handler_takes_is_a_dead_letter() -> None:
    dead = Dead()
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    nexus.on_dead_letter(dead)
    async with nexus:
        await nexus.ingest(Event(5, "nobody"))
        await nexus.join()
    ((event_id, exc),) = dead.calls
    assert event_id == 5 and isinstance(exc, errors.UnhandledEvent)


async def test_a_filter_that_raises_makes_no_dead_letter() -> None:
    dead, hook = Dead(), Hook()
    handled: list[int] = []
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.on_dead_letter(dead)
    nexus.add_filter(lambda event, queue: 1 / 0)
    nexus.add_handler("job", lambda event, queue: handled.append(event.id))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert handled == [1] and dead.calls == [] and len(hook.calls) == 1


async def test_each_registration_that_fails_makes_one_call() -> None:
    dead = Dead()
    nexus = AsyncEventNexus(multiple=True)
    nexus.on_error(Hook())
    nexus.on_dead_letter(dead)

    async def fails(event: Event, queue: Any) -> None:
        raise ValueError("no")

    nexus.add_handler("job", fails)
    nexus.add_handler("job", fails, concurrency=2)
    nexus.add_handler("job", lambda event, queue: None)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert [event_id for event_id, _ in dead.calls] == [1, 1]


async def test_a_dead_letter_callback_that_raises_is_reported_and_the_loop_goes_on() -> None:
    hook = Hook()
    handled: list[int] = []
    nexus = AsyncEventNexus()
    nexus.on_error(hook)

    @nexus.on_dead_letter
    async def broken(event: Event, exc: BaseException) -> None:
        raise RuntimeError("the dead-letter store is down")

    nexus.add_handler("bad", lambda event, queue: 1 / 0)
    nexus.add_handler("good", lambda event, queue: handled.append(event.id))
    async with nexus:
        await nexus.ingest(Event(1, "bad"))
        await nexus.ingest(Event(2, "good"))
        await nexus.join()
    assert handled == [2]
    kinds = [(type(exc).__name__, subject) for exc, subject in hook.calls]
    assert kinds[0][0] == "ZeroDivisionError"
    assert kinds[1] == ("RuntimeError", broken)


def test_the_dead_letter_callback_must_take_event_and_exception() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"dead-letter hook.*\(event, exception\)"):
        nexus.on_dead_letter(42)  # type: ignore[arg-type]


async def test_without_a_dead_letter_callback_the_error_hook_alone_sees_the_failure() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("job", lambda event, queue: 1 / 0)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(nexus.join(), 5)
    assert len(hook.calls) == 1


# -- kept, with why ---------------------------------------------------------------------


async def test_a_failed_event_is_kept_with_its_reason_exception_attempts_and_handler() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())

    @nexus.on("job")
    def fails(event: Event, queue: Any) -> None:
        raise KeyError("boom")

    before = time.time()
    async with nexus:
        await nexus.ingest(Event(1, "job", 3, {"n": [1, 2]}, {"origin": "test"}))
        await nexus.join()
        letters = await nexus.dead_letters()
    assert letters == [
        DeadLetter(
            id=letters[0].id,
            event=Event(1, "job", 3, {"n": [1, 2]}, {"origin": "test"}),
            reason="failed",
            exception="KeyError",
            message="'boom'",
            attempts=1,
            handler=fails.__qualname__,
            when=letters[0].when,
        )
    ]
    assert before <= letters[0].when <= time.time()
    assert nexus.stats()["dead_letters"] == 1


async def test_unhandled_timed_out_and_retried_events_each_say_so() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())

    @nexus.on("slow", timeout=0.01)
    async def slow(event: Event, queue: Any) -> None:
        await asyncio.get_running_loop().create_future()

    @nexus.on("flaky", retry=Retry(attempts=3, backoff=0.001, jitter=0))
    def flaky(event: Event, queue: Any) -> None:
        raise ConnectionError("down")

    async with nexus:
        for event in (Event(1, "nobody"), Event(2, "slow"), Event(3, "flaky")):
            await nexus.ingest(event)
        await asyncio.wait_for(nexus.join(), 10)
        letters = {letter.event.id: letter for letter in await nexus.dead_letters()}
    unhandled, timeout, retried = letters[1], letters[2], letters[3]
    assert (unhandled.reason, unhandled.exception, unhandled.handler) == ("unhandled", "UnhandledEvent", None)
    assert (timeout.reason, timeout.exception, timeout.handler) == (
        "timeout",
        "HandlerTimeout",
        slow.__qualname__,
    )
    assert (retried.reason, retried.exception, retried.attempts) == ("failed", "ConnectionError", 3)
    assert retried.handler == flaky.__qualname__ and retried.message == "down"


async def test_each_registration_that_fails_keeps_one_naming_its_handler() -> None:
    nexus = AsyncEventNexus(multiple=True)
    nexus.on_error(Hook())

    async def in_the_loop(event: Event, queue: Any) -> None:
        raise ValueError("loop")

    async def beside_it(event: Event, queue: Any) -> None:
        raise ValueError("lane")

    nexus.add_handler("job", in_the_loop)
    nexus.add_handler("job", beside_it, concurrency=2)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
        letters = await nexus.dead_letters()
    assert sorted((letter.handler, letter.message) for letter in letters) == [
        (beside_it.__qualname__, "lane"),
        (in_the_loop.__qualname__, "loop"),
    ]


async def test_the_list_is_newest_first_with_a_limit_and_a_type() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    async with nexus:
        for i in range(6):
            await nexus.ingest(Event(i, "a" if i % 2 else 7))
        await nexus.join()
        assert [letter.event.id for letter in await nexus.dead_letters()] == [5, 4, 3, 2, 1, 0]
        assert [letter.event.id for letter in await nexus.dead_letters(limit=2)] == [5, 4]
        assert [letter.event.id for letter in await nexus.dead_letters(event_type="a")] == [5, 3, 1]
        assert [letter.event.id for letter in await nexus.dead_letters(event_type=7, limit=1)] == [4]
        with pytest.raises(errors.BadCall, match="limit must be an int >= 0"):
            await nexus.dead_letters(limit=-1)


async def test_without_a_journal_the_last_thousand_are_kept() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    async with nexus:
        for i in range(1005):
            await nexus.ingest(Event(i, "nobody"))
        await nexus.join()
        letters = await nexus.dead_letters(limit=2000)
    assert len(letters) == 1000 == nexus.stats()["dead_letters"]
    assert letters[0].event.id == 1004 and letters[-1].event.id == 5


async def test_a_dead_letter_keeps_the_event_as_it_failed() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())

    @nexus.on("job")
    def changes_then_fails(event: Event, queue: Any) -> None:
        event.payload["seen"] = True  # what the handler did before it failed
        raise RuntimeError("no")

    async with nexus:
        event = Event(1, "job", 0, {"n": 1}, {"h": "v"})
        await nexus.ingest(event)
        await nexus.join()
        assert event.headers is not None
        event.headers["later"] = "changed"
        [letter] = await nexus.dead_letters()
    assert letter.event.headers == {"h": "v"}


# -- replayed, deleted -------------------------------------------------------------------


class Fixable:
    """A handler that fails until it is fixed, and records what it handled."""

    def __init__(self) -> None:
        self.fixed = False
        self.handled: list[Event] = []

    def __call__(self, event: Event, queue: Any) -> None:
        if not self.fixed:
            raise RuntimeError("not yet")
        self.handled.append(event)


async def test_a_replayed_event_is_the_same_event_with_a_replayed_header() -> None:
    handler = Fixable()
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    nexus.add_handler("job", handler)
    async with nexus:
        await nexus.ingest(Event(11, "job", 2, [1, "two"], {"origin": "test"}))
        await nexus.join()
        [letter] = await nexus.dead_letters()
        handler.fixed = True
        assert await nexus.replay_dead_letters([letter.id]) == 1
        await nexus.join()
        assert await nexus.dead_letters() == []
        assert nexus.stats()["dead_letters"] == 0
    assert handler.handled == [Event(11, "job", 2, [1, "two"], {"origin": "test", REPLAYED: "1"})]


async def test_a_replayed_event_that_fails_again_comes_back_counted() -> None:
    handler = Fixable()
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    nexus.add_handler("job", handler)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
        assert await nexus.replay_dead_letters(all=True) == 1
        await nexus.join()
        [again] = await nexus.dead_letters()
        assert again.event.headers == {REPLAYED: "1"}
        assert await nexus.replay_dead_letters([again.id]) == 1
        await nexus.join()
        [third] = await nexus.dead_letters()
        assert third.event.headers == {REPLAYED: "2"} and third.id > again.id


async def test_replay_and_delete_say_what_to_pass() -> None:
    nexus = AsyncEventNexus()
    for method in (nexus.replay_dead_letters, nexus.delete_dead_letters):
        with pytest.raises(errors.BadCall, match=r"pass ids=\[...\].*or all=True"):
            await method()
        with pytest.raises(errors.BadCall, match="not both"):
            await method([1], all=True)
        with pytest.raises(errors.BadType, match="ids, which are ints"):
            await method(["1"])  # type: ignore[list-item]
        with pytest.raises(errors.BadType, match="iterable of ints"):
            await method(5)  # type: ignore[arg-type]


async def test_replay_after_stop_is_refused_and_keeps_the_dead_letters() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    async with nexus:
        await nexus.ingest(Event(1, "nobody"))
        await nexus.join()
    with pytest.raises(errors.LoopStopped, match="replay_dead_letters"):
        await nexus.replay_dead_letters(all=True)
    assert len(await nexus.dead_letters()) == 1


async def test_delete_removes_the_ids_given_or_all() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    async with nexus:
        for i in range(4):
            await nexus.ingest(Event(i, "nobody"))
        await nexus.join()
        ids = [letter.id for letter in await nexus.dead_letters()]
        assert await nexus.delete_dead_letters([ids[0], ids[1], 999_999]) == 2
        assert [letter.id for letter in await nexus.dead_letters()] == ids[2:]
        assert await nexus.delete_dead_letters(all=True) == 2
        assert await nexus.dead_letters() == []
        assert await nexus.replay_dead_letters(all=True) == 0


# -- in the journal ----------------------------------------------------------------------


def table(path: Path, name: str) -> list[tuple[Any, ...]]:
    """A table of a journal file, read by a connection of its own: what is on disk."""
    with sqlite3.connect(path) as connection:
        return list(connection.execute(f"SELECT * FROM {name}"))


async def test_with_a_journal_a_dead_letter_replaces_its_event_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    dead = Dead()
    nexus.on_dead_letter(dead)

    @nexus.on("job")
    async def fails(event: Event, queue: Any) -> None:
        raise ValueError("bad input")

    async with nexus:
        await nexus.ingest(Event(1, "job", 0, {"n": 1}))
        await nexus.join()
        [letter] = await nexus.dead_letters()
        assert table(path, "journal_events") == []  # on disk: the event is gone ...
        assert [row[0] for row in table(path, "journal_dead_letters")] == [letter.id]  # ... and kept
    assert [event_id for event_id, _ in dead.calls] == [1]  # the callback still runs

    again = AsyncEventNexus(journal=path)
    seen: list[Event] = []
    again.add_handler("job", lambda event, queue: seen.append(event))
    async with again:
        await again.join()
        assert again.stats()["dead_letters"] == 1
        assert await again.dead_letters() == [letter]
    assert seen == []  # a dead letter is not replayed at start: only events still held are
    assert letter.event == Event(1, "job", 0, {"n": 1}) and letter.handler == fails.__qualname__


async def test_with_a_journal_each_failing_registration_keeps_one_written_with_the_removal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(multiple=True, journal=path)
    nexus.on_error(Hook())
    release = asyncio.Event()

    async def quick(event: Event, queue: Any) -> None:
        raise ValueError("quick")

    async def slow(event: Event, queue: Any) -> None:
        await release.wait()
        raise ValueError("slow")

    nexus.add_handler("job", quick)
    nexus.add_handler("job", slow, concurrency=2)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await until(lambda: nexus.stats()["failed"] >= 1)
        # One registration failed, the other still holds the event: its row stays, and no
        # dead letter is written before the event's handling is over.
        assert await nexus.dead_letters() == [] and len(table(path, "journal_events")) == 1
        release.set()
        await nexus.join()
        letters = await nexus.dead_letters()
        assert sorted(letter.message for letter in letters) == ["quick", "slow"]
        assert table(path, "journal_events") == []


async def test_with_a_journal_an_event_from_redis_is_kept_by_its_stream_only(
    tmp_path: Path, redis_url: str, stream: str
) -> None:
    from async_nexus.transports.redis import RedisStreamReceiver, RedisStreamSender

    sender = RedisStreamSender(redis_url, stream)
    await sender.send(Event(1, "job"))
    await sender.close()
    path = tmp_path / "events.db"
    receiver = RedisStreamReceiver(redis_url, stream, group="g")
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    nexus.add_handler("job", lambda event, queue: 1 / 0)
    nexus.add_producer(receiver)
    async with nexus:
        await until(lambda: receiver.dead_lettered >= 1)
        await nexus.join()
        assert await nexus.dead_letters() == []
    assert table(path, "journal_events") == [] and table(path, "journal_dead_letters") == []


async def test_with_a_journal_the_oldest_go_past_the_bound_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=SqliteJournal(path, dead_letters_max=3))
    nexus.on_error(Hook())
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        async with nexus:
            for i in range(5):
                nexus.ingest_nowait(Event(i, "nobody"))
            await nexus.join()
            letters = await nexus.dead_letters()
            assert [letter.event.id for letter in letters] == [4, 3, 2]
            assert nexus.stats()["dead_letters"] == 3
    warnings = [r.getMessage() for r in caplog.records if "dead letters" in r.getMessage()]
    assert warnings and all("oldest were removed" in w for w in warnings)
    assert sum(int(w.split("the ")[2].split(" oldest")[0]) for w in warnings) == 2
    assert len(table(path, "journal_dead_letters")) == 3


def test_the_bound_must_be_a_positive_int(tmp_path: Path) -> None:
    with pytest.raises(errors.BadValue, match="dead_letters_max must be an int >= 1"):
        SqliteJournal(tmp_path / "events.db", dead_letters_max=0)


async def test_with_a_journal_replay_journals_the_event_and_removes_the_dead_letter_together(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    async with nexus:
        await nexus.ingest(Event(1, "job", 1, "payload", {"origin": "test"}))
        await nexus.join()
    # A nexus that is never started: replay() puts the event in the journal and in its
    # queue; closing it without dispatching leaves the event for the next start.
    idle = AsyncEventNexus(journal=path)
    [letter] = await idle.dead_letters()
    assert await idle.replay_dead_letters([letter.id]) == 1
    assert table(path, "journal_dead_letters") == [] and len(table(path, "journal_events")) == 1
    idle.cleanup()

    handled: list[Event] = []
    fixed = AsyncEventNexus(journal=path)
    fixed.add_handler("job", lambda event, queue: handled.append(event))
    async with fixed:
        await fixed.join()
        assert await fixed.dead_letters() == []
    assert handled == [Event(1, "job", 1, "payload", {"origin": "test", REPLAYED: "1", REDELIVERED: "1"})]
    assert table(path, "journal_events") == []


async def test_with_a_journal_a_replayed_event_that_fails_again_is_kept_again(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    handler = Fixable()
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    nexus.add_handler("job", handler)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
        assert await nexus.replay_dead_letters(all=True) == 1
        await nexus.join()
        [again] = await nexus.dead_letters()
        assert again.event.headers == {REPLAYED: "1"}
        assert await nexus.delete_dead_letters([again.id]) == 1
    assert table(path, "journal_dead_letters") == [] and table(path, "journal_events") == []


async def test_with_a_journal_ids_are_never_given_out_twice(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    for _ in range(2):
        nexus = AsyncEventNexus(journal=path)
        nexus.on_error(Hook())
        async with nexus:
            await nexus.ingest(Event(1, "nobody"))
            await nexus.join()
            [letter] = await nexus.dead_letters()
            assert await nexus.delete_dead_letters(all=True) == 1
    assert letter.id == 2  # the first, deleted, kept its id to itself


async def test_a_journal_written_by_the_previous_format_opens_and_keeps_dead_letters(tmp_path: Path) -> None:
    # journal_format1.sqlite was written by async-nexus before dead letters were kept: format
    # 1, holding Event(7, "job", 0, {"n": 1}, {"origin": "old"}) and Event(8, 42, 1, "second").
    path = tmp_path / "old.db"
    shutil.copy(DATA / "journal_format1.sqlite", path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (1,)
    handled: list[Event] = []
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    nexus.add_handler("job", lambda event, queue: handled.append(event))
    async with nexus:
        await nexus.join()
        [letter] = await nexus.dead_letters()  # 42 has no handler
    assert handled == [Event(7, "job", 0, {"n": 1}, {"origin": "old", REDELIVERED: "1"})]
    assert (letter.event.id, letter.event.type, letter.reason) == (8, 42, "unhandled")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (2,)
    assert len(table(path, "journal_dead_letters")) == 1


# -- killed ------------------------------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent


def accepted_ids(path: Path) -> list[int]:
    """The ids written down whole (a kill may cut the last line short)."""
    return [int(n) for n in path.read_text().split("\n")[:-1]] if path.exists() else []


async def held_and_dead(path: Path) -> tuple[list[int], list[int]]:
    """The ids of the events a journal holds, and of its dead letters."""
    journal = SqliteJournal(path)
    entries = journal.open()
    letters = await journal.dead_letters_by_id(None)
    await journal.close()
    return [entry.event.id for entry in entries], [letter.event.id for letter in letters]


@pytest.mark.timeout(120)
async def test_killed_at_random_moments_every_event_is_held_or_a_dead_letter_never_both(
    tmp_path: Path,
) -> None:
    path, accepted = tmp_path / "events.db", tmp_path / "accepted"
    rng = random.Random()
    first = 0
    for _ in range(3):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.daemons.dead_lettering", str(path), str(accepted), str(first)],
            cwd=ROOT,
            env=env,
        )
        target = len(accepted_ids(accepted)) + rng.randint(300, 3000)
        try:
            deadline = time.monotonic() + 60
            while len(accepted_ids(accepted)) < target and daemon.poll() is None:
                assert time.monotonic() < deadline, "the daemon took no events in for a minute"
                await asyncio.sleep(0.01)
            assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
        first = max(accepted_ids(accepted)) + 100  # past the ids producers held at the kill
        held, dead = await held_and_dead(path)
        assert len(set(held)) == len(held), "an event held twice"
        assert len(set(dead)) == len(dead), "a dead letter kept twice"
        assert not set(held) & set(dead), "an event both held and a dead letter"
        missing = set(accepted_ids(accepted)) - set(held) - set(dead)
        assert not missing, f"accepted events neither held nor dead letters: {sorted(missing)[:10]}"


@pytest.mark.parametrize("journaled", [False, True])
async def test_an_id_given_many_times_is_replayed_once(tmp_path: Path, journaled: bool) -> None:
    nexus = AsyncEventNexus(journal=tmp_path / "events.db" if journaled else None)
    nexus.on_error(Hook())
    async with nexus:
        await nexus.ingest(Event(1, "nobody"))
        await nexus.join()
        [letter] = await nexus.dead_letters()
        # More than the journal asks SQLite for in one query: the copies span two of them.
        assert await nexus.replay_dead_letters([letter.id] * 600) == 1
        await nexus.join()
        [again] = await nexus.dead_letters()
        assert again.event.headers == {REPLAYED: "1"}
        assert await nexus.delete_dead_letters([again.id] * 600) == 1
        assert await nexus.dead_letters() == []
