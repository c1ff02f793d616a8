"""The dead letters of a Redis stream (``<stream>:dead``), for the command line. Private to it.

A record there is what :class:`~async_nexus.transports.redis.RedisStreamReceiver` wrote when
it gave up on an entry: ``reason``, ``stream`` (where the entry was), ``id``, ``group``,
``consumer``, for a failed handling ``exception``, ``message`` and ``attempts``, and the
entry's own fields, each as ``field:<name>``. A replay appends those fields to the stream
the entry came from and deletes the record, in one ``MULTI`` transaction.
"""

from __future__ import annotations

import re
from typing import Any

from ..codec import EventCodec
from ..dead_letters import FAILED, MALFORMED, TIMEOUT, UNHANDLED, replayed
from ..errors import DecodeError
from ..events import Event
from ._output import Record

_ENTRY_ID = re.compile(r"\d+-\d+")
_FIELD = b"field:"
_EVENT = b"event"
_PAGE = 200
#: What a record's reason starts with when the entry was delivered too often.
_UNDELIVERABLE = "delivered "


class RedisLetters:
    """The dead-letter stream of ``stream`` on the server at ``url``, read with ``codec``."""

    def __init__(self, url: str, stream: str, codec: EventCodec | None = None) -> None:
        import redis.asyncio as aioredis  # here: the [redis] extra is needed for --redis only

        self.stream, self.dead_stream = stream, f"{stream}:dead"
        self.where = f"the dead-letter stream {self.dead_stream!r} at {url}"
        self._client = aioredis.from_url(url, socket_connect_timeout=5.0, socket_timeout=10.0)
        self._codec = codec if codec is not None else EventCodec()

    @staticmethod
    def parse_id(text: str) -> str:
        """A record id of a Redis stream: ``<milliseconds>-<sequence>``."""
        if not _ENTRY_ID.fullmatch(text):
            raise ValueError(
                "a Redis dead letter's id is a stream entry id such as 1700000000000-0 "
                f"(see 'list'), not {text!r}"
            )
        return text

    async def count(self) -> int:
        """How many records the dead-letter stream holds."""
        return int(await self._client.xlen(self.dead_stream))

    async def newest(self, limit: int, event_type: int | str | None) -> list[Record]:
        """The newest ``limit`` records (of events of ``event_type`` if given), newest first."""
        found: list[Record] = []
        end = "+"
        while len(found) < limit:
            page: Any = await self._client.xrevrange(self.dead_stream, end, "-", count=_PAGE)
            for entry_id, fields in page:
                record = self._record(entry_id, fields)
                if event_type is None or ("fields" not in record and record["type"] == event_type):
                    found.append(record)
                    if len(found) >= limit:
                        break
            if len(page) < _PAGE:
                break
            end = "(" + page[-1][0].decode()
        return found

    async def show(self, ids: list[str]) -> list[Record]:
        """The records of ``ids`` that exist, oldest first."""
        return [self._record(entry_id, fields) for entry_id, fields in await self._entries(ids)]

    async def replay(self, ids: list[str] | None) -> list[str]:
        """Append each entry to the stream it came from and delete its record; the ids done."""
        done: list[str] = []
        for entry_id, fields in await self._entries(ids):
            origin = fields.get(b"stream", self.stream.encode())
            entry = {name[len(_FIELD) :]: value for name, value in fields.items() if name.startswith(_FIELD)}
            event = self._event(entry)
            if event is not None:  # the same event, saying it was replayed; else byte for byte
                entry[_EVENT] = self._codec.encode(replayed(event))
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(origin, entry)  # type: ignore[arg-type]
            pipe.xdel(self.dead_stream, entry_id)
            await pipe.execute()
            done.append(entry_id.decode())
        return done

    async def purge(self, ids: list[str] | None) -> list[str]:
        """Delete the records ``ids`` (every one if None); the ids deleted."""
        found = [entry_id for entry_id, _ in await self._entries(ids)]
        for start in range(0, len(found), 1000):
            await self._client.xdel(self.dead_stream, *found[start : start + 1000])
        return [entry_id.decode() for entry_id in found]

    async def close(self) -> None:
        """Close the connection to the server."""
        await self._client.aclose()

    async def _entries(self, ids: list[str] | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The records with these ids that exist (every one if None), oldest first."""
        if ids is not None:
            found: list[tuple[bytes, dict[bytes, bytes]]] = []
            for entry_id in sorted(set(ids), key=lambda text: tuple(map(int, text.split("-")))):
                one: Any = await self._client.xrange(self.dead_stream, entry_id, entry_id)
                found += one
            return found
        everything: list[tuple[bytes, dict[bytes, bytes]]] = []
        start = "-"
        while True:
            page: Any = await self._client.xrange(self.dead_stream, start, "+", count=_PAGE)
            everything += page
            if len(page) < _PAGE:
                return everything
            start = "(" + page[-1][0].decode()

    def _event(self, entry: dict[bytes, bytes]) -> Event | None:
        raw = entry.get(_EVENT)
        if raw is None:
            return None
        try:
            return self._codec.decode(raw)
        except DecodeError:
            return None  # malformed, or written with another codec: replayed as it is

    def _record(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Record:
        text = {
            name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
            for name, value in fields.items()
        }
        entry = {name[len(_FIELD) :]: value for name, value in fields.items() if name.startswith(_FIELD)}
        event = self._event(entry)
        exception = text.get("exception", "").rpartition(".")[2]
        reason_text = text.get("reason", "")
        if exception:
            reason = {"UnhandledEvent": UNHANDLED, "HandlerTimeout": TIMEOUT}.get(exception, FAILED)
        elif reason_text.startswith(_UNDELIVERABLE):
            reason = "undeliverable"
        else:
            reason = MALFORMED
        attempts: Any = int(text["attempts"]) if text.get("attempts", "").isdigit() else None
        record: Record = {
            "id": entry_id.decode(),
            "event_id": None if event is None else event.id,
            "type": None if event is None else event.type,
            "priority": None if event is None else event.priority,
            "payload": None if event is None else event.payload,
            "headers": {} if event is None else (event.headers or {}),
            "reason": reason,
            "exception": exception,
            "message": text.get("message", reason_text),
            "attempts": attempts,
            "handler": None,
            "when": int(entry_id.split(b"-")[0]) / 1000,
            "stream": text.get("stream", self.stream),
        }
        if event is None:
            record["fields"] = {
                name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
                for name, value in entry.items()
            }
        return record
