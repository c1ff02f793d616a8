"""Secondary events: what a handler puts in the nexus queue, or returns.

They are admitted past the queue's bound, so a handler never deadlocks the loop that runs
it; a chain of them that runs away is stopped by ``max_chain`` and by a limit on how far
they may overflow the queue.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from .errors import BadCall, RunawayChain
from .events import Event
from .items import DispatchTracer, Item, require_event
from .keeper import Keeper
from .queue import EventQueue
from .requests import answer_to

# Internal: handlers reach this through the queue they are given.
__all__: list[str] = []

# How far secondary events may overflow a bounded queue (at least): room for bursts, not
# for a runaway.
_OVERFLOW = 65536


class Owner(Protocol):
    """The dispatcher, as far as secondary events need it."""

    queue: EventQueue
    refusing: bool
    max_chain: int
    tracer: DispatchTracer | None
    counts: dict[str, int]
    keeper: Keeper | None

    def handling(self) -> Item | None:
        """The item the calling handler handles."""


def emit(owner: Owner, event: Any) -> None:
    """Queue a secondary event from a handler: past the bound, but not without limit."""
    require_event(event, "a handler can only queue")
    if owner.refusing:
        raise BadCall(f"secondary event {event.id!r} refused: the nexus has stopped")
    current = owner.handling()
    depth = 1 if current is None else current.depth + 1
    if depth > owner.max_chain:
        raise RunawayChain(
            f"event {event.id!r} of type {event.type!r} would be the {depth}th secondary event "
            f"in one chain (max_chain={owner.max_chain}); a handler keeps emitting events that "
            "lead back to itself"
        )
    queue = owner.queue
    if queue.maxsize and len(queue) >= queue.maxsize + max(queue.maxsize, _OVERFLOW):
        raise RunawayChain(
            f"secondary events overflow the queue ({len(queue)} queued, maxsize={queue.maxsize}); "
            "handlers emit events much faster than they are dispatched"
        )
    if owner.tracer is not None:
        owner.tracer.inject(event)
    keeper = owner.keeper
    if keeper is None:
        queue.put_forced(Item(event, depth), event.priority)
    else:  # kept like any accepted event; its row is staged before its parent's goes
        queue.put_forced(keeper.item(event, keeper.keep(event), depth), event.priority)
    owner.counts["secondary"] += 1


async def emit_result(owner: Owner, result: Any, item: Item | None) -> None:
    """Queue what a handler of ``item`` returned; the answer, if ``item`` is a request."""
    if inspect.isawaitable(result):
        # A plain function that returned a coroutine: run it, as the user meant.
        result = await result
        if result is None:
            return
    if isinstance(result, Event):
        events: Any = (result,)
    elif isinstance(result, (list, tuple)):
        events = result
    else:
        return
    if item is not None and item.reply is not None:
        # What the handler of a request returns is its answer, not a secondary event.
        for answer in events:
            require_event(answer, "the handler of a request can only answer with")
            item.reply(answer_to(item.event, answer))
        return
    for event in events:
        emit(owner, event)
