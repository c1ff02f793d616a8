"""``python -m async_nexus dead-letters``, run as a real process on real journal files and a
real redis-server: list, show, replay, purge; a journal held by a running daemon; bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support import Collector, Hook
from test_redis import until

from async_nexus import AsyncEventNexus, Event
from async_nexus.dead_letters import REPLAYED
from async_nexus.journal import SqliteJournal
from async_nexus.transports.redis import RedisStreamReceiver, RedisStreamSender

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m async_nexus dead-letters ARGS``, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "async_nexus", "dead-letters", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def fail_into(path: Path, *events: Event) -> None:
    """Run a nexus on the journal ``path`` whose handler of "job" fails on every event."""
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())

    @nexus.on("job")
    def job(event: Event, queue: Any) -> None:
        raise ValueError(f"cannot do {event.id}")

    async with nexus:
        for event in events:
            await nexus.ingest(event)
        await nexus.join()


def table_of(path: Path, name: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return list(connection.execute(f"SELECT * FROM {name}"))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    asyncio.run(
        fail_into(
            path,
            Event(1, "job", 0, {"order": 1}),
            Event(2, "job", 3, {"order": 2}, {"origin": "shop"}),
            Event(3, "other", 0, "nobody takes this"),
            Event(4, 7, 0, "\x1b[31mred\x1b[0m " + "x" * 200),
        )
    )
    return path


# -- a journal file -----------------------------------------------------------------------


def test_list_shows_a_table_newest_first_with_a_limit_and_a_type(journal: Path) -> None:
    done = cli("list", "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "EVENT",
        "TYPE",
        "REASON",
        "EXCEPTION",
        "ATTEMPTS",
        "WHEN",
        "(UTC)",
        "PAYLOAD",
    ]
    assert [line.split()[1] for line in lines[1:]] == ["4", "3", "2", "1"]
    assert lines[2].split()[2:5] == ['"other"', "unhandled", "UnhandledEvent"]
    assert lines[3].split()[2:6] == ['"job"', "failed", "ValueError", "1"]
    assert "\x1b" not in done.stdout and "\\u001b[31mred" in lines[1]  # escaped, and cut short
    assert "x" * 60 not in lines[1] and lines[1].endswith("…")

    limited = cli("list", "--journal", str(journal), "--limit", "2", "--type", "job")
    assert [line.split()[1] for line in limited.stdout.splitlines()[1:]] == ["2", "1"]
    by_int = cli("list", "--journal", str(journal), "--type", "7")
    assert [line.split()[1] for line in by_int.stdout.splitlines()[1:]] == ["4"]


def test_list_and_show_print_json(journal: Path) -> None:
    listed = json.loads(cli("list", "--journal", str(journal), "--json", "--type", "job").stdout)
    assert [(r["id"], r["event_id"], r["type"], r["priority"]) for r in listed] == [
        (2, 2, "job", 3),
        (1, 1, "job", 0),
    ]
    assert listed[0]["payload"] == {"order": 2} and listed[0]["headers"] == {"origin": "shop"}
    assert (listed[0]["reason"], listed[0]["exception"], listed[0]["message"]) == (
        "failed",
        "ValueError",
        "cannot do 2",
    )
    assert listed[0]["handler"].endswith("job") and listed[0]["attempts"] == 1

    shown = cli("show", "2", "--journal", str(journal))
    assert shown.returncode == 0, shown.stderr
    assert "dead letter 2" in shown.stdout and '"origin": "shop"' in shown.stdout
    assert '"order": 2' in shown.stdout and '"cannot do 2"' in shown.stdout
    whole = cli("show", "4", "--journal", str(journal), "--json")
    assert json.loads(whole.stdout)[0]["payload"] == "\x1b[31mred\x1b[0m " + "x" * 200  # not cut


def test_show_of_an_id_that_is_not_there_says_so(journal: Path) -> None:
    done = cli("show", "2", "99", "--journal", str(journal))
    assert done.returncode == 1
    assert "dead letter 2" in done.stdout and "no dead letter with the id 99" in done.stderr


def test_replay_without_a_daemon_hands_the_events_to_its_next_start(journal: Path) -> None:
    done = cli("replay", "1", "2", "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    assert "replayed 2" in done.stdout and "next start" in done.stdout
    assert [row[0] for row in table_of(journal, "journal_dead_letters")] == [3, 4]
    assert len(table_of(journal, "journal_events")) == 2  # journaled: the next start dispatches them

    daemon = start_daemon(journal, fixed=True)
    try:
        handled = [read_line(daemon, "handled") for _ in range(2)]
    finally:
        stop(daemon)
    # Dispatch order: priority 0 before 3.
    assert handled[0] == f'handled 1 {{"redelivered": "1", "{REPLAYED}": "1"}}'
    assert handled[1] == f'handled 2 {{"origin": "shop", "redelivered": "1", "{REPLAYED}": "1"}}'
    assert table_of(journal, "journal_events") == []
    assert [row[0] for row in table_of(journal, "journal_dead_letters")] == [3, 4]


def test_replay_all_with_json_lists_the_ids_replayed(journal: Path) -> None:
    done = cli("replay", "--all", "--json", "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"replayed": [1, 2, 3, 4]}
    assert table_of(journal, "journal_dead_letters") == []
    assert len(table_of(journal, "journal_events")) == 4


def test_a_journal_held_by_a_running_daemon_is_left_alone_and_the_console_named(journal: Path) -> None:
    daemon = start_daemon(journal, fixed=False)
    try:
        read_line(daemon, "READY")
        for args in (("list",), ("replay", "--all"), ("purge", "--all", "--yes")):
            done = cli(*args, "--journal", str(journal))
            assert done.returncode == 1
            assert "held by a running daemon" in done.stderr and f"process {daemon.pid}" in done.stderr
            assert "--console" in done.stderr
    finally:
        stop(daemon)
    assert len(table_of(journal, "journal_dead_letters")) == 4


def test_purge_deletes_the_ids_given_and_asks_before_deleting_all(journal: Path) -> None:
    done = cli("purge", "1", "--journal", str(journal))
    assert done.returncode == 0 and "deleted 1" in done.stdout
    refused = cli("purge", "--all", "--journal", str(journal), stdin="n\n")
    assert refused.returncode == 1 and "Delete all 3 dead letters" in refused.stderr
    assert "nothing deleted" in refused.stderr and len(table_of(journal, "journal_dead_letters")) == 3
    no_answer = cli("purge", "--all", "--journal", str(journal))  # stdin at its end: no
    assert no_answer.returncode == 1 and len(table_of(journal, "journal_dead_letters")) == 3
    confirmed = cli("purge", "--all", "--journal", str(journal), "--json", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert json.loads(confirmed.stdout) == {"deleted": [2, 3, 4]}  # the question is on stderr
    assert "[y/N]" in confirmed.stderr
    assert table_of(journal, "journal_dead_letters") == []
    empty = cli("purge", "--all", "--journal", str(journal))  # nothing to ask about
    assert empty.returncode == 0 and empty.stdout.strip() == f"no dead letters in the journal {journal}"
    empty_json = cli("purge", "--all", "--journal", str(journal), "--json")
    assert empty_json.returncode == 0 and json.loads(empty_json.stdout) == {"deleted": []}


def test_purge_all_with_yes_does_not_ask(journal: Path) -> None:
    done = cli("purge", "--all", "--yes", "--journal", str(journal))
    assert done.returncode == 0 and done.stdout.strip() == "deleted 4"
    assert table_of(journal, "journal_dead_letters") == []
    assert len(table_of(journal, "journal_events")) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list",), "give --journal PATH, or --redis URL --stream NAME"),
        (("list", "--journal", "j.db", "--redis", "redis://x"), "give --journal PATH, or --redis"),
        (("list", "--redis", "redis://localhost"), "--redis needs --stream NAME"),
        (("replay", "--journal", "j.db"), "give the ids of the dead letters to replay, or --all"),
        (("purge", "1", "--all", "--journal", "j.db"), "or --all (not both)"),
        (("list", "--journal", "j.db", "--limit", "0"), "must be a whole number >= 1"),
    ],
)
def test_bad_usage_says_what_to_give(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = cli(*(str(tmp_path / a) if a == "j.db" else a for a in args))
    assert done.returncode == 2
    assert message in done.stderr


def test_an_id_of_the_wrong_shape_and_a_missing_journal_are_refused(journal: Path, tmp_path: Path) -> None:
    wrong = cli("replay", "abc", "--journal", str(journal))
    assert wrong.returncode == 2 and "ids are numbers >= 1" in wrong.stderr
    missing = tmp_path / "no-such.db"
    gone = cli("list", "--journal", str(missing))
    assert gone.returncode == 1 and f"there is no journal at {missing}" in gone.stderr
    assert not missing.exists()  # not created by looking
    other = tmp_path / "notes.txt"
    other.write_text("not a journal")
    refused = cli("list", "--journal", str(other))
    assert refused.returncode == 1 and "is damaged or not a SQLite database" in refused.stderr
    assert other.read_text() == "not a journal"


SHOP_CODEC = """
from async_nexus import NamedEvent
from async_nexus.codec import EventCodec


class OrderPlaced(NamedEvent):
    pass


codec = EventCodec(named_events=[OrderPlaced], format="msgpack")


def make_codec():
    return EventCodec(named_events=[OrderPlaced], format="msgpack")
"""


def test_a_journal_with_a_codec_of_its_own_is_read_with_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop_codec.py").write_text(SHOP_CODEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_codec

    path = tmp_path / "events.db"

    async def fail_one() -> None:
        nexus = AsyncEventNexus(journal=SqliteJournal(path, codec=shop_codec.make_codec()))
        nexus.on_error(Hook())
        nexus.add_handler(shop_codec.OrderPlaced, lambda event, queue: 1 / 0)
        async with nexus:
            await nexus.ingest(shop_codec.OrderPlaced(1, {"sku": "A-7"}))
            await nexus.join()

    asyncio.run(fail_one())
    # The default codec reads neither msgpack nor the named event: the error says what to pass.
    plain = cli("list", "--journal", str(path))
    assert plain.returncode == 1
    assert "this codec cannot rebuild" in plain.stderr
    assert "From the command line: pass --codec package.module:attribute" in plain.stderr
    for name in ("shop_codec:codec", "shop_codec:make_codec"):
        listed = cli("list", "--json", "--journal", str(path), "--codec", name, "--app-dir", str(tmp_path))
        assert listed.returncode == 0, listed.stderr
        (record,) = json.loads(listed.stdout)
        assert (record["type"], record["exception"]) == ("OrderPlaced", "ZeroDivisionError")
    replayed = cli(
        "replay", "--all", "--journal", str(path), "--codec", "shop_codec:codec", "--app-dir", str(tmp_path)
    )
    assert replayed.returncode == 0, replayed.stderr

    async def run_again() -> list[Any]:
        got: list[Any] = []
        nexus = AsyncEventNexus(journal=SqliteJournal(path, codec=shop_codec.make_codec()))
        nexus.add_handler(shop_codec.OrderPlaced, lambda event, queue: got.append(event))
        async with nexus:
            await nexus.join()
        return got

    (event,) = asyncio.run(run_again())
    assert isinstance(event, shop_codec.OrderPlaced) and event.payload == {"sku": "A-7"}
    assert REPLAYED in (event.headers or {})


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("shop_codec", "codec 'shop_codec' is not of the form package.module:attribute"),
        ("no_such_module:codec", "cannot import module 'no_such_module' of codec"),
        ("shop_codec:nope", "'shop_codec' has no attribute 'nope' (codec 'shop_codec:nope')"),
        ("shop_codec:OrderPlaced", "calling codec 'shop_codec:OrderPlaced' failed: TypeError"),
        ("shop_codec:__name__", "codec 'shop_codec:__name__' is a str, not an EventCodec"),
    ],
)
def test_a_codec_that_cannot_be_had_is_a_usage_error(
    journal: Path, tmp_path: Path, codec: str, message: str
) -> None:
    (tmp_path / "shop_codec.py").write_text(SHOP_CODEC)
    done = cli("list", "--journal", str(journal), "--codec", codec, "--app-dir", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr
    assert "package.module:attribute" in done.stderr


# -- a daemon on the journal ----------------------------------------------------------------


def start_daemon(journal: Path, *, fixed: bool) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DEAD_LETTERS_JOURNAL": str(journal),
        "DEAD_LETTERS_FIXED": "1" if fixed else "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "async_nexus", "run", "tests.daemons.dead_letters_daemon:nexus"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def read_line(daemon: subprocess.Popen[str], starting: str) -> str:
    """The next line of the daemon's output that starts with ``starting`` (the timeout guards it)."""
    assert daemon.stdout is not None
    for line in daemon.stdout:
        if line.startswith(starting):
            return line.rstrip("\n")
    raise AssertionError(f"the daemon ended (exit {daemon.wait()}) before printing {starting!r}")


def stop(daemon: subprocess.Popen[str]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0


# -- a Redis stream --------------------------------------------------------------------------


@pytest.fixture
def redis_dead(redis_url: str, stream: str) -> Iterator[None]:
    """``stream:dead`` holding two failed events and one malformed entry, by a real receiver."""

    async def fill() -> None:
        sender = RedisStreamSender(redis_url, stream)
        await sender.send(Event(1, "job", 0, {"order": 1}, {"origin": "shop"}))
        await sender.send(Event(2, "job", 0, {"order": 2}))
        await sender.close()
        client = aioredis.from_url(redis_url)
        await client.xadd(stream, {b"event": b"not json at all"})
        receiver = RedisStreamReceiver(redis_url, stream, group="g")
        async with AsyncEventNexus() as nexus:
            nexus.on_error(Hook())
            nexus.add_handler("job", lambda event, queue: 1 / 0)
            nexus.add_producer(receiver)
            await until(lambda: receiver.dead_lettered == 3)
            # Kept where the transport keeps them, not by the nexus too: a replay from
            # both would send them twice.
            assert await nexus.dead_letters() == []
        assert await client.xlen(f"{stream}:dead") == 3
        await client.aclose()

    asyncio.run(fill())
    yield


def test_redis_list_shows_failed_and_malformed_records(redis_url: str, stream: str, redis_dead: None) -> None:
    done = cli("list", "--redis", redis_url, "--stream", stream, "--json")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    order = [tuple(map(int, r["id"].split("-"))) for r in records]
    assert order == sorted(order, reverse=True)  # newest first
    by_event = {r["event_id"]: r for r in records}
    assert {event_id: r["reason"] for event_id, r in by_event.items()} == {
        None: "malformed",
        1: "failed",
        2: "failed",
    }
    assert by_event[1]["exception"] == "ZeroDivisionError" and by_event[1]["attempts"] == 1
    assert by_event[1]["headers"] == {"origin": "shop"} and by_event[1]["stream"] == stream
    assert by_event[None]["fields"] == {"event": "not json at all"}
    table = cli("list", "--redis", redis_url, "--stream", stream, "--type", "job")
    assert sorted(line.split()[1] for line in table.stdout.splitlines()[1:]) == ["1", "2"]

    shown = cli("show", by_event[1]["id"], by_event[None]["id"], "--redis", redis_url, "--stream", stream)
    assert shown.returncode == 0, shown.stderr
    blocks = {block.split("\n", 1)[0]: block for block in shown.stdout.split("\n\n")}
    first, malformed = (
        blocks[f"dead letter {by_event[1]['id']}"],
        blocks[f"dead letter {by_event[None]['id']}"],
    )
    assert f"stream:     {stream}" in first and "ZeroDivisionError" in first
    assert '"origin": "shop"' in first and '"order": 1' in first
    assert 'entry:      {"event": "not json at all"}' in malformed


def test_redis_replay_appends_to_the_stream_it_came_from_and_removes_the_record(
    redis_url: str, stream: str, redis_dead: None
) -> None:
    records = json.loads(cli("list", "--redis", redis_url, "--stream", stream, "--json").stdout)
    first = next(r["id"] for r in records if r["event_id"] == 1)
    done = cli("replay", first, "--redis", redis_url, "--stream", stream)
    assert done.returncode == 0, done.stderr
    assert "replayed 1" in done.stdout

    async def receive() -> tuple[list[Event], int]:
        handled = Collector()
        receiver = RedisStreamReceiver(redis_url, stream, group="g")
        async with AsyncEventNexus() as nexus:
            nexus.add_handler("job", handled)
            nexus.add_producer(receiver)
            await handled.wait(1, timeout=10)
        client = aioredis.from_url(redis_url)
        left = await client.xlen(f"{stream}:dead")
        await client.aclose()
        return handled.events, left

    events, left = asyncio.run(receive())
    assert events == [Event(1, "job", 0, {"order": 1}, {"origin": "shop", REPLAYED: "1"})]
    assert left == 2


def test_redis_purge_all_and_a_malformed_entry_replayed_as_it_was(
    redis_url: str, stream: str, redis_dead: None
) -> None:
    records = json.loads(cli("list", "--redis", redis_url, "--stream", stream, "--json").stdout)
    malformed = next(r["id"] for r in records if r["reason"] == "malformed")
    assert cli("replay", malformed, "--redis", redis_url, "--stream", stream).returncode == 0

    async def last_entry() -> dict[bytes, bytes]:
        client = aioredis.from_url(redis_url)
        [(_, fields)] = await client.xrevrange(stream, count=1)
        await client.aclose()
        return dict(fields)

    assert asyncio.run(last_entry()) == {b"event": b"not json at all"}
    done = cli("purge", "--all", "--yes", "--redis", redis_url, "--stream", stream)
    assert done.returncode == 0 and done.stdout.strip() == "deleted 2"
    assert cli("list", "--redis", redis_url, "--stream", stream).stdout.strip() == "no dead letters"


def test_an_unreachable_redis_is_an_error_that_names_it() -> None:
    done = cli("list", "--redis", "redis://127.0.0.1:1", "--stream", "s")
    assert done.returncode == 1
    assert "the dead-letter stream 's:dead' at redis://127.0.0.1:1" in done.stderr
    wrong = cli("replay", "17", "--redis", "redis://127.0.0.1:1", "--stream", "s")
    assert wrong.returncode == 2 and "a stream entry id such as 1700000000000-0" in wrong.stderr


def test_looking_counts_no_delivery_and_brings_an_old_journal_up_to_date(tmp_path: Path) -> None:
    # Written by async-nexus before dead letters were kept (format 1), holding two events.
    path = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "data" / "journal_format1.sqlite", path)
    done = cli("list", "--journal", str(path))
    assert done.returncode == 0 and done.stdout.strip() == "no dead letters"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (2,)
        assert connection.execute("SELECT seq, deliveries FROM journal_events").fetchall() == [(1, 0), (2, 0)]


def test_redis_records_of_a_codec_of_their_own_are_read_with_codec(
    redis_url: str, stream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop_codec.py").write_text(SHOP_CODEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_codec

    async def fail_one() -> None:
        sender = RedisStreamSender(redis_url, stream, codec=shop_codec.make_codec())
        await sender.send(shop_codec.OrderPlaced(1, {"sku": "A-7"}))
        await sender.close()
        receiver = RedisStreamReceiver(redis_url, stream, group="g", codec=shop_codec.make_codec())
        async with AsyncEventNexus() as nexus:
            nexus.on_error(Hook())
            nexus.add_handler(shop_codec.OrderPlaced, lambda event, queue: 1 / 0)
            nexus.add_producer(receiver)
            await until(lambda: receiver.dead_lettered == 1)

    asyncio.run(fail_one())
    # Without the codec the record is shown by its raw fields; with it, as the event it was.
    plain = json.loads(cli("list", "--json", "--redis", redis_url, "--stream", stream).stdout)
    assert [(r["type"], "fields" in r) for r in plain] == [(None, True)]
    done = cli(
        "list", "--json", "--redis", redis_url, "--stream", stream,
        "--codec", "shop_codec:codec", "--app-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert (record["type"], record["payload"], record["exception"]) == (
        "OrderPlaced", {"sku": "A-7"}, "ZeroDivisionError",
    )  # fmt: skip
