"""Misuse of the journal, the runner, the codec and the ZeroMQ transport is a BadCall that is
also the builtin a caller may catch (TypeError, ValueError); data from outside stays DecodeError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from async_nexus import Event
from async_nexus.codec import EventCodec
from async_nexus.errors import BadCall, BadType, BadValue, DecodeError
from async_nexus.journal import SqliteJournal
from async_nexus.runner import configure_logging
from async_nexus.transports.zmq import ZmqEventReceiver, ZmqEventSender


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SqliteJournal]:
    opened = SqliteJournal(tmp_path / "events.db")
    opened.open()
    yield opened
    opened.close_without_loop()


@pytest.fixture
def context() -> Iterator[zmq.asyncio.Context]:
    made = zmq.asyncio.Context()
    yield made
    made.destroy(linger=0)


def _closed_pull(context: zmq.asyncio.Context) -> zmq.asyncio.Socket:
    socket = context.socket(zmq.PULL)
    socket.close()
    return socket


TYPE_MISUSES: dict[str, Callable[..., Any]] = {
    "journal path": lambda **_: SqliteJournal(42),  # type: ignore[arg-type]
    "journal codec": lambda tmp_path, **_: SqliteJournal(tmp_path / "j.db", codec="json"),  # type: ignore[arg-type]
    "journal due": lambda journal, **_: journal.append(Event(1, "t"), due="soon"),
    "checkpoint value": lambda journal, **_: journal.save_checkpoint("tail", 3),
    "payload": lambda **_: EventCodec().encode(Event(1, "t", 0, object())),
    "codec registration": lambda **_: EventCodec().register(Event),
    "receiver socket": lambda **_: ZmqEventReceiver("tcp://127.0.0.1:5555"),  # type: ignore[arg-type]
    "sender topic": lambda context, **_: ZmqEventSender(context.socket(zmq.PUSH), topic=7),  # type: ignore[arg-type]
}

VALUE_MISUSES: dict[str, Callable[..., Any]] = {
    "journal synchronous": lambda tmp_path, **_: SqliteJournal(tmp_path / "j.db", synchronous="off"),  # type: ignore[arg-type]
    "journal due": lambda journal, **_: journal.append(Event(1, "t"), due=float("nan")),
    "journal seq": lambda journal, **_: journal.remove(99),
    "payload": lambda **_: EventCodec().encode(Event(1, "t", 0, float("inf"))),
    "codec format": lambda **_: EventCodec(format="xml"),  # type: ignore[arg-type]
    "log format": lambda **_: configure_logging(log_format="yaml"),  # type: ignore[arg-type]
    "receiver socket": lambda context, **_: ZmqEventReceiver(_closed_pull(context)),
}


@pytest.mark.parametrize("what", list(TYPE_MISUSES))
def test_a_wrong_type_is_a_bad_call_and_a_type_error(
    what: str, tmp_path: Path, journal: SqliteJournal, context: zmq.asyncio.Context
) -> None:
    with pytest.raises(BadType) as info:
        TYPE_MISUSES[what](tmp_path=tmp_path, journal=journal, context=context)
    assert isinstance(info.value, BadCall) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("what", list(VALUE_MISUSES))
def test_a_wrong_value_is_a_bad_call_and_a_value_error(
    what: str, tmp_path: Path, journal: SqliteJournal, context: zmq.asyncio.Context
) -> None:
    with pytest.raises(BadValue) as info:
        VALUE_MISUSES[what](tmp_path=tmp_path, journal=journal, context=context)
    assert isinstance(info.value, BadCall) and isinstance(info.value, ValueError)


def test_malformed_data_from_outside_is_a_decode_error_not_a_bad_call() -> None:
    with pytest.raises(DecodeError) as info:
        EventCodec().decode(b'{"v": 1, "id": 1}')
    assert not isinstance(info.value, BadCall)
