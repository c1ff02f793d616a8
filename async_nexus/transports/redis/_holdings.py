"""What one consumer of a group holds: entries taken and not yet acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from ._common import IDS_PER_COMMAND, UNREACHABLE, Backoff, Fields, logger, stop_tasks, stream_entries

# An entry taken: its id, its fields, how many times the group has delivered it.
Entry = tuple[bytes, Fields, int]


class Holdings:
    """The entries a receiver has taken (read or claimed) and not yet acknowledged.

    It bounds them to ``limit``, acknowledges them in batches once they are dispatched, and
    keeps them fresh on the server so that other consumers leave them alone.

    :param before_ack: awaited before each acknowledgement, so that what must reach Redis
        before an entry is acknowledged (its answers) is written first.
    """

    def __init__(
        self,
        client: Callable[[], aioredis.Redis],
        *,
        stream: str,
        group: str,
        consumer: str,
        limit: int,
        backoff: tuple[float, float],
        what: str,
        before_ack: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.limit = limit
        self._backoff = backoff
        self._what = what
        self._before_ack = before_ack
        self._ids: set[bytes] = set()
        self._acks: list[bytes] = []
        self._acks_waiting = asyncio.Event()
        self._acked = asyncio.Event()
        self._room = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self.acknowledged = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    @property
    def room(self) -> int:
        return self.limit - len(self._ids)

    def take(self, entry_id: bytes) -> None:
        self._ids.add(entry_id)

    def give_back(self, entry_id: bytes) -> None:
        """Forget an entry taken but not dispatched: it stays pending, for redelivery."""
        self._ids.discard(entry_id)
        self._room.set()

    def acknowledge(self, entry_id: bytes) -> None:
        """Queue ``entry_id`` for a batched ``XACK``."""
        self._acks.append(entry_id)
        self._acks_waiting.set()

    async def wait_room(self) -> int:
        """Wait until fewer than ``limit`` entries are held; return how many more may be."""
        while len(self._ids) >= self.limit:
            self._room.clear()
            await self._room.wait()
        return self.limit - len(self._ids)

    def start_acknowledging(self) -> None:
        if self._acker is None:
            self._acker = asyncio.create_task(self._ack_loop(), name=f"{self._what} acks")

    async def close(self, timeout: float) -> None:
        """Acknowledge what was dispatched (for up to ``timeout`` s), then forget everything.

        What is left unacknowledged stays pending, and is delivered again later.
        """
        acker, self._acker = self._acker, None
        if acker is not None:
            if self._acks:
                try:
                    await asyncio.wait_for(self._all_acknowledged(), timeout)
                except asyncio.TimeoutError:
                    pass
            await stop_tasks(acker)
        if self._acks:
            logger.warning(
                "%s: closed with %d dispatched entries not acknowledged; they will be delivered again",
                self._what,
                len(self._acks),
            )
        self._acks.clear()
        self._ids.clear()

    async def _ack_loop(self) -> None:
        backoff = Backoff(f"{self._what}: acknowledging", *self._backoff)
        acks = self._acks
        while True:
            if not acks:
                self._acks_waiting.clear()
                await self._acks_waiting.wait()
                continue
            ids = acks[:IDS_PER_COMMAND]
            try:
                await self._before_ack()
                await self._client().xack(self.stream, self.group, *ids)
            except UNREACHABLE as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            del acks[: len(ids)]
            self._ids.difference_update(ids)
            self.acknowledged += len(ids)
            self._room.set()
            if not acks:
                self._acked.set()

    async def _all_acknowledged(self) -> None:
        while self._acks:
            self._acked.clear()
            await self._acked.wait()

    async def keep_fresh_loop(self, interval: float) -> None:
        # Claiming our own held entries resets their idle time, so other consumers (whose
        # claim_idle counts from it) leave entries we are still dispatching alone, however
        # long they wait in the nexus queue. A task of its own: the claimer may be held up by
        # a full nexus queue, which is exactly when this matters.
        while True:
            await asyncio.sleep(interval)
            ids: list[Any] = list(self._ids)
            try:
                for start in range(0, len(ids), IDS_PER_COMMAND):
                    chunk = ids[start : start + IDS_PER_COMMAND]
                    await self._client().xclaim(self.stream, self.group, self.consumer, 0, chunk, justid=True)
            except UNREACHABLE as exc:
                logger.debug("%s: keeping entries fresh failed: %s", self._what, exc)

    async def deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        """How many times the group has delivered each of ``ids``."""
        if not ids:
            return {}
        pipe = self._client().pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        found = await pipe.execute()
        return {row["message_id"]: int(row["times_delivered"]) for rows in found for row in rows}


    async def history(self, cursor: bytes, count: int, *, counted: bool) -> list[Entry]:
        """Up to ``count`` of this consumer's pending entries after ``cursor``, with deliveries."""
        response = await self._client().xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=count
        )
        return await self._with_deliveries(stream_entries(response), counted)

    async def claim_all(
        self, min_idle: int, take: Callable[[bytes, Fields, int], Awaitable[None]], *, counted: bool
    ) -> None:
        """Claim the entries pending for ``min_idle`` ms or longer, and ``take`` each."""
        cursor: bytes | str = "0-0"
        while True:
            room = self.room
            if room <= 0:
                return  # busy enough: what is pending waits for the next round
            response = await self._client().xautoclaim(
                self.stream, self.group, self.consumer, min_idle, start_id=cursor, count=room
            )
            cursor = response[0]
            claimed = [(i, fields) for i, fields in response[1] if i is not None and i not in self._ids]
            for entry_id, fields, deliveries in await self._with_deliveries(claimed, counted):
                await take(entry_id, fields, deliveries)
            if cursor in (b"0-0", "0-0"):
                return

    async def _with_deliveries(self, entries: list[tuple[bytes, Fields]], counted: bool) -> list[Entry]:
        ids = [entry_id for entry_id, fields in entries if fields and entry_id not in self._ids]
        deliveries = await self.deliveries(ids) if counted else {}
        return [(entry_id, fields, deliveries.get(entry_id, 1)) for entry_id, fields in entries]
