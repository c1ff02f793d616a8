"""What one consumer of a group holds: entries taken and not yet acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from .._retrying import stop_tasks
from ._common import IDS_PER_COMMAND, UNREACHABLE, Backoff, Fields, logger

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
        #: The entries held, and the loop time each was taken at.
        self._ids: dict[bytes, float] = {}
        self._stuck_reported: set[bytes] = set()
        self._acks: list[bytes] = []
        self._acks_waiting = asyncio.Event()
        self._acked = asyncio.Event()
        self._room = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        # How often each entry found pending at the start of this run had been delivered.
        self._redelivered: dict[bytes, int] = {}
        self.acknowledged = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    @property
    def room(self) -> int:
        return self.limit - len(self._ids)

    def take(self, entry_id: bytes) -> None:
        self._ids[entry_id] = asyncio.get_running_loop().time()

    def give_back(self, entry_id: bytes) -> None:
        """Forget an entry: one taken but not dispatched stays pending, for redelivery; one
        moved to the dead letters was acknowledged with the move."""
        self._ids.pop(entry_id, None)
        self._stuck_reported.discard(entry_id)
        self._room.set()

    def stuck(self, seconds: float) -> list[tuple[bytes, float]]:
        """Entries held for ``seconds`` or longer and not yet reported, and how long each was held."""
        now = asyncio.get_running_loop().time()
        found = [
            (entry_id, now - taken)
            for entry_id, taken in self._ids.items()
            if now - taken >= seconds and entry_id not in self._stuck_reported
        ]
        self._stuck_reported.update(entry_id for entry_id, _ in found)
        return found

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
        self._stuck_reported.clear()

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
            for entry_id in ids:
                self._ids.pop(entry_id, None)
                self._stuck_reported.discard(entry_id)
            self.acknowledged += len(ids)
            self._room.set()
            if not acks:
                self._acked.set()

    async def _all_acknowledged(self) -> None:
        while self._acks:
            self._acked.clear()
            await self._acked.wait()

    async def keep_fresh_loop(self, interval: float, look_for_stuck: Callable[[], Awaitable[None]]) -> None:
        # A task of its own: the claimer may be held up by a full nexus queue, which is
        # exactly when this matters.
        while True:
            await asyncio.sleep(interval)
            await look_for_stuck()
            try:
                await self._keep_fresh()
            except UNREACHABLE as exc:
                logger.debug("%s: keeping entries fresh failed: %s", self._what, exc)

    async def _keep_fresh(self) -> None:
        # Claiming our own held entries resets their idle time, so other consumers (whose
        # claim_idle counts from it) leave entries we are still dispatching alone, however
        # long they wait in the nexus queue. JUSTID: this is no delivery, it is not counted.
        ids: list[Any] = list(self._ids)
        for start in range(0, len(ids), IDS_PER_COMMAND):
            chunk = ids[start : start + IDS_PER_COMMAND]
            await self._client().xclaim(self.stream, self.group, self.consumer, 0, chunk, justid=True)

    async def deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        """How many times the group has delivered each of ``ids``."""
        if not ids:
            return {}
        pipe = self._client().pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        found = await pipe.execute()
        return {row["message_id"]: int(row["times_delivered"]) for rows in found for row in rows}

    def begin_history(self) -> None:
        """A new run of this consumer begins: what it finds pending is delivered again."""
        self._redelivered.clear()

    async def history(self, cursor: str, count: int, *, again: bool) -> tuple[str | None, list[Entry]]:
        """This consumer's own pending entries after ``cursor`` that it does not hold.

        Returns the cursor to go on from (``None``: no more) and up to ``count`` entries; a
        trimmed one has no fields. With ``again``, taking an entry counts as one more
        delivery: an earlier run of this consumer had it. Without, the count stays: the
        entry was read by this run, whose reply a lost connection swallowed.

        ``XREADGROUP`` would count every re-read as a delivery, so that after a few lost
        connections healthy entries would look like poison, to this consumer and to any
        that claims them later. So the entries are listed (``XPENDING``) and fetched with
        ``XCLAIM`` to ourselves, which sets the count we judge by (``RETRYCOUNT``).
        """
        # Listed past the entries held here, which a page may be full of after a lost connection.
        rows: list[Any] = await self._client().xpending_range(
            self.stream, self.group, cursor, "+", count + len(self._ids), consumername=self.consumer
        )
        if not rows:
            self._redelivered.clear()
            return None, []
        wanted = []
        for row in rows:
            entry_id: bytes = row["message_id"]
            cursor = "(" + entry_id.decode()
            if entry_id in self._ids:
                continue
            deliveries = int(row["times_delivered"])
            if again:  # counted once per run, however often a lost reply makes us ask
                deliveries = self._redelivered.setdefault(entry_id, deliveries + 1)
            wanted.append((entry_id, deliveries))
            if len(wanted) == count:
                break
        pipe = self._client().pipeline(transaction=False)
        for entry_id, deliveries in wanted:
            pipe.xclaim(self.stream, self.group, self.consumer, 0, [entry_id], retrycount=deliveries)
        found = await pipe.execute() if wanted else []
        entries: list[Entry] = []
        for (entry_id, deliveries), claimed in zip(wanted, found, strict=True):
            # Gone from the stream: Redis 7 drops it from the group as well, 6.2 answers nil.
            fields = claimed[0][1] if claimed and claimed[0][1] else {}
            entries.append((entry_id, fields, deliveries))
        return cursor, entries

    async def claim_all(
        self, min_idle: int, take: Callable[[bytes, Fields, int], Awaitable[None]], *, counted: bool
    ) -> None:
        """Claim the entries pending for ``min_idle`` ms or longer, and ``take`` each.

        An entry found trimmed from the stream is taken with no fields.
        """
        # After a lost connection our own held entries may have gone idle too: the claim
        # would take them again and count a delivery that is none.
        await self._keep_fresh()
        cursor: bytes | str = "0-0"
        while True:
            room = self.room
            if room <= 0:
                return  # busy enough: what is pending waits for the next round
            response = await self._client().xautoclaim(
                self.stream, self.group, self.consumer, min_idle, start_id=cursor, count=room
            )
            cursor = response[0]
            await self._uncount([i for i, _ in response[1] if i in self._ids])
            claimed = [(i, fields) for i, fields in response[1] if i is not None and i not in self._ids]
            for entry_id, fields, deliveries in await self._with_deliveries(claimed, counted):
                await take(entry_id, fields, deliveries)
            # Redis 7 lists the entries it found trimmed, and has already dropped them.
            for entry_id in response[2] if len(response) > 2 else ():
                await take(entry_id, {}, 0)
            if cursor in (b"0-0", "0-0"):
                return

    async def _uncount(self, held: list[bytes]) -> None:
        # A stall (a paused or slow server) can let entries we hold go idle between the
        # refresh and the claim; the claim then counted a delivery that is none. Undo it.
        if not held:
            return
        counts = await self.deliveries(held)
        pipe = self._client().pipeline(transaction=False)
        for entry_id, count in counts.items():
            pipe.xclaim(
                self.stream,
                self.group,
                self.consumer,
                0,
                [entry_id],
                retrycount=max(count - 1, 1),
                justid=True,
            )
        await pipe.execute()

    async def _with_deliveries(self, entries: list[tuple[bytes, Fields]], counted: bool) -> list[Entry]:
        ids = [entry_id for entry_id, fields in entries if fields]
        deliveries = await self.deliveries(ids) if counted else {}
        return [(entry_id, fields, deliveries.get(entry_id, 1)) for entry_id, fields in entries]
