"""Answers to requests: published to the stream their ``reply-to`` names, then the request acknowledged.

The answer goes through JetStream, not a plain core-NATS reply subject: a core-NATS message
reaches only whoever listens at that moment, so an answer published while the asking
process reconnects, or restarts, would be gone. Published to a stream, it is kept until
the asking side's receiver takes it, and counted out only once the stream acknowledged
it (``PubAck``). The request is acknowledged only after all its answers are: a receiver
that dies in between has its request delivered again, handled again, and the answer
published again with the same ``Nats-Msg-Id``, which the reply stream drops as a
duplicate within its ``duplicate_window``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any

import nats.errors

from .._retrying import stop_tasks
from ._common import UNREACHABLE, Backoff, Connection, logger
from ._held import ACK, Held
from ._publisher import MSG_ID


class Answers:
    """Publishes the answers of the requests one receiver holds, retrying until acknowledged."""

    def __init__(
        self, connection: Connection, held: Held, *, stream: str, consumer: str,
        backoff: tuple[float, float], what: str,
    ) -> None:  # fmt: skip
        self._connection = connection
        self._held = held
        self._prefix = f"answer-{stream}-{consumer}"
        self._backoff = backoff
        self._what = what
        # The publishes under way of each request (by sequence), and every task of ours.
        self._of: dict[int, list[asyncio.Task[None]]] = collections.defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Answers the reply streams acknowledged.
        self.published = 0

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def answer(self, sequence: int, reply_to: str, body: bytes) -> None:
        """Publish ``body``, an answer to the held request ``sequence``, to ``reply_to``.

        The requester names ``reply_to``; one that is no subject to publish to is dropped
        with an error logged, so that it does not hold up the request (the requester's
        ``request()`` times out).
        """
        if not _publishable(reply_to):
            logger.error(
                "%s: request %d names reply-to %r, which is no subject to publish to; its answer is dropped",
                self._what,
                sequence,
                reply_to,
            )
            return
        under_way = self._of[sequence]
        message_id = f"{self._prefix}-{sequence}-{len(under_way) + 1}"
        under_way.append(self._start(self._publish(sequence, reply_to, body, message_id)))

    def dispatched(self, sequence: int) -> None:
        """The request ``sequence`` was handled: acknowledge it once its answers are out."""
        under_way = self._of.pop(sequence, None)
        if not under_way:
            self._held.settle(sequence, ACK)
            return
        self._start(self._acknowledge_after(sequence, under_way))

    def forget(self, sequence: int) -> None:
        """The request ``sequence`` went another way (dead letters): its answers still go out."""
        self._of.pop(sequence, None)

    async def _acknowledge_after(self, sequence: int, under_way: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*under_way)
        self._held.settle(sequence, ACK)

    async def _publish(self, sequence: int, reply_to: str, body: bytes, message_id: str) -> None:
        backoff = Backoff(f"{self._what}: answering request {sequence} on {reply_to!r}", *self._backoff)
        while True:
            try:
                js = (await self._connection.get()).jetstream()
                # No responders: no stream holds reply_to (yet); retried and logged, and the
                # request, kept alive meanwhile, is reported as stuck after stuck_after.
                await js.publish(reply_to, body, headers={MSG_ID: message_id})
                break
            except nats.errors.MaxPayloadError as exc:
                logger.error(
                    "%s: NATS refused the answer to request %d, dropped: %s", self._what, sequence, exc
                )
                return
            except UNREACHABLE as exc:
                await backoff.failed(exc)
        backoff.succeeded()
        self.published += 1

    async def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for answers under way; requests cut off are delivered again."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=max(timeout, 0.001))
        await stop_tasks(*late)
        if late:
            logger.warning(
                "%s: closed with %d answers or acknowledgements of requests under way; those "
                "requests will be delivered again",
                self._what,
                len(late),
            )
        self._of.clear()


def _publishable(subject: str) -> bool:
    """Whether ``subject`` names one subject, which nats-py can publish to."""
    if not subject or any(c.isspace() for c in subject) or {"*", ">", ""} & set(subject.split(".")):
        return False
    try:
        subject.encode()
    except UnicodeEncodeError:
        return False
    return True
