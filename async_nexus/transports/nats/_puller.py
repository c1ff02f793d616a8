"""Pull requests to one JetStream consumer, the messages they bring gathered on one inbox.

A pull asks the server for up to ``n`` messages, waiting at most ``wait`` seconds for
them (``$JS.API.CONSUMER.MSG.NEXT``). Each pull has a reply subject of its own under the
inbox, so the status that ends a pull (no messages, the pull expired, a leader changed)
is told apart from that of a pull given up on earlier (messages carry their own
subjects). One pull is under way at a time, and the next one asks only for what the
caller has room for, so the receiver never holds more than it asked for. Messages reach
a deque through the subscription's callback, not a future and a timer per message.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# Statuses that end a pull quietly: no messages now (404), the pull expired (408).
_QUIET = {"404", "408"}
_STATUS = "Status"
_DESCRIPTION = "Description"
# How much longer than ``wait`` a pull may go unanswered before it counts as lost (a
# reconnection, a leader that changed while it waited).
_GRACE = 1.0
# How often to look again whether a lost connection is back before asking for messages.
_OFFLINE_PAUSE = 0.1


class Puller:
    """Pulls messages of ``consumer`` on ``stream`` for one receiver, one pull at a time."""

    def __init__(self, client: Client, stream: str, consumer: str, *, wait: float) -> None:
        self._client = client
        self._request = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._wait = wait
        self._inbox = f"{client.new_inbox()}."
        self._numbers = itertools.count(1)
        self._arrived: collections.deque[Msg] = collections.deque()
        self._woken = asyncio.Event()
        self._subscription: Subscription | None = None
        # The reply subject of the pull under way ("" when none is), how many messages it
        # may still bring, and when it counts as lost.
        self._current = ""
        self._expected = 0
        self._deadline = 0.0
        self._failure: BaseException | None = None

    async def open(self) -> None:
        self._subscription = await self._client.subscribe(f"{self._inbox}*", cb=self._arrive)

    async def close(self) -> None:
        """Stop listening: servers from 2.10 on drop a pull whose inbox nobody listens to."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.unsubscribe()

    @property
    def pulling(self) -> bool:
        """Whether a pull is under way: messages it asked for may still come."""
        return bool(self._current)

    async def _arrive(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers and not msg.data else None
        if status is None:
            # A message comes with its own subject, not the pull's: it is counted against
            # the pull under way (one from a pull given up on is rare, and asks for less).
            self._arrived.append(msg)
            if self._current:
                self._expected -= 1
                if self._expected <= 0:
                    self._current = ""
        elif msg.subject == self._current:  # a status ends the pull it answers; others are old
            self._current = ""
            if status not in _QUIET:
                description = msg.headers.get(_DESCRIPTION, "") if msg.headers else ""
                self._failure = nats.errors.Error(f"a pull was refused: {status} {description}".strip())
        self._woken.set()

    async def pull(self, room: int) -> list[Msg]:
        """Messages that arrived, after asking for up to ``room`` more if no pull is under way.

        Waits until some arrive, the pull ends, or it counts as lost.

        :raises nats.errors.Error: the server refused the pull (a consumer deleted, no
            leader); or what publishing the request raised.
        """
        loop = asyncio.get_running_loop()
        if not self._current and not self._arrived and room > 0:
            if not self._client.is_connected:
                # A pull asked now would wait in nats-py's buffer and reach the server with
                # the others asked meanwhile, all at once, for more than there is room for.
                await asyncio.sleep(_OFFLINE_PAUSE)
                return []
            subject = f"{self._inbox}{next(self._numbers)}"
            request = json.dumps({"batch": room, "expires": int(self._wait * 1e9)}).encode()
            self._current, self._expected = subject, room
            self._deadline = loop.time() + self._wait + _GRACE
            try:
                await self._client.publish(self._request, request, reply=subject)
            except BaseException:
                self._current = ""
                raise
        while not self._arrived and self._failure is None:
            if not self._current:
                return []  # ended with nothing
            left = self._deadline - loop.time()
            if left <= 0:
                self._current = ""  # lost; messages it still brings are taken all the same
                return []
            self._woken.clear()
            try:
                await asyncio.wait_for(self._woken.wait(), left)
            except asyncio.TimeoutError:
                pass
        if self._failure is not None and not self._arrived:
            failure, self._failure = self._failure, None
            raise failure
        arrived = list(self._arrived)
        self._arrived.clear()
        return arrived
