"""What one receiver holds: messages fetched and not yet settled with the server."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from .._retrying import stop_tasks
from ._common import UNREACHABLE, logger

# How a held message is settled: its method name on nats-py's Msg.
ACK, NAK, TERM = "ack", "nak", "term"


class Held:
    """The messages a receiver fetched and has not yet acknowledged, bounded to ``limit``.

    Settling (ack, nak, term) is queued from the nexus's callbacks and done by a task of
    its own, in order. A message that cannot be settled because the connection is gone is
    redelivered by the server once its ``ack_wait`` has passed: at least once.
    """

    def __init__(self, *, limit: int, what: str) -> None:
        self.limit = limit
        self._what = what
        self._msgs: dict[int, Msg] = {}
        # The loop time each held message was taken at, and those reported as stuck.
        self._taken: dict[int, float] = {}
        self._stuck_reported: set[int] = set()
        self._room = asyncio.Event()
        self._settling: collections.deque[tuple[Msg, str]] = collections.deque()
        self._settle_waiting = asyncio.Event()
        self._settled = asyncio.Event()
        self._settler: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        #: Messages acknowledged after dispatch.
        self.acknowledged = 0

    def __len__(self) -> int:
        return len(self._msgs)

    def __contains__(self, sequence: object) -> bool:
        return sequence in self._msgs

    def take(self, sequence: int, msg: Msg) -> None:
        self._msgs[sequence] = msg
        self._taken[sequence] = asyncio.get_running_loop().time()

    def stuck(self, seconds: float) -> list[tuple[int, float]]:
        """Messages held for ``seconds`` or longer and not yet reported, and how long each was held."""
        now = asyncio.get_running_loop().time()
        found = [
            (sequence, now - taken)
            for sequence, taken in self._taken.items()
            if now - taken >= seconds and sequence not in self._stuck_reported
        ]
        self._stuck_reported.update(sequence for sequence, _ in found)
        return found

    def settle(self, sequence: int, how: str) -> None:
        """Queue the held message ``sequence`` to be settled ``how`` (ACK, NAK or TERM)."""
        msg = self._msgs.pop(sequence, None)
        if msg is None:
            return
        self._taken.pop(sequence, None)
        self._stuck_reported.discard(sequence)
        self._queue(msg, how)
        self._room.set()

    def settle_msg(self, msg: Msg, how: str) -> None:
        """Queue a message that was never held (a dead letter, say) to be settled ``how``."""
        self._queue(msg, how)

    def _queue(self, msg: Msg, how: str) -> None:
        self._settling.append((msg, how))
        self._settle_waiting.set()
        if self._settler is None:
            self._settler = asyncio.create_task(self._settle_loop(), name=f"{self._what} settles")

    async def wait_room(self) -> int:
        """Wait until fewer than ``limit`` messages are held; return how many more may be."""
        while len(self._msgs) >= self.limit:
            self._room.clear()
            await self._room.wait()
        return self.limit - len(self._msgs)

    def keep_alive(self, interval: float) -> None:
        """Tell the server every ``interval`` s that the held messages are still being worked on.

        So a message whose handler runs long, or whose retry waits, is not redelivered to
        another receiver meanwhile.
        """
        if self._keeper is None:
            self._keeper = asyncio.create_task(
                self._keep_alive_loop(interval), name=f"{self._what} keeps alive"
            )

    async def stop_keeping_alive(self) -> None:
        keeper, self._keeper = self._keeper, None
        await stop_tasks(keeper)

    async def _keep_alive_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for msg in list(self._msgs.values()):
                try:
                    await msg.in_progress()
                except UNREACHABLE as exc:
                    logger.debug("%s: keeping a message alive failed: %s", self._what, exc)
                    break

    async def _settle_loop(self) -> None:
        settling = self._settling
        while True:
            if not settling:
                self._settled.set()
                self._settle_waiting.clear()
                await self._settle_waiting.wait()
                continue
            msg, how = settling.popleft()
            try:
                await getattr(msg, how)()
            except UNREACHABLE as exc:
                # Not settled: the server delivers it again after ack_wait.
                logger.warning(
                    "%s: could not %s a message (%s); it will be delivered again", self._what, how, exc
                )
                continue
            if how == ACK:
                self.acknowledged += 1

    async def close(self, timeout: float, flush: Callable[[], Awaitable[None]]) -> None:
        """Hand back what was not dispatched (``nak``: delivered again at once), settle what
        is queued, and push it out (``flush``), for up to ``timeout`` s in all."""
        await self.stop_keeping_alive()
        for sequence in list(self._msgs):
            self.settle(sequence, NAK)
        settler, self._settler = self._settler, None
        try:
            if settler is not None and self._settling:
                self._settled.clear()
                await asyncio.wait_for(self._settled.wait(), timeout)
            await asyncio.wait_for(flush(), max(timeout, 0.1))
        except (asyncio.TimeoutError, *UNREACHABLE) as exc:
            logger.warning(
                "%s: closed with %d messages not settled (%s); the server delivers them again after ack_wait",
                self._what,
                len(self._settling),
                exc or "timed out",
            )
        finally:
            await stop_tasks(settler)
            self._settling.clear()
            self._msgs.clear()
            self._taken.clear()
            self._stuck_reported.clear()
