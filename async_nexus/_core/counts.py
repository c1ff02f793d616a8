"""What :meth:`~async_nexus.AsyncEventNexus.stats` reports, gathered from the parts that count."""

from __future__ import annotations

from typing import Any

from ..schedule import Scheduler
from .admission import Admission
from .dead_letters import DeadLetters
from .dispatch import Dispatcher
from .feeds import Feeds
from .keeper import Keeper
from .outcomes import Outcomes
from .queue import EventQueue
from .routing import Router

# Internal: the public face is AsyncEventNexus.stats().
__all__: list[str] = []


def snapshot(
    router: Router,
    queue: EventQueue,
    admission: Admission,
    dispatcher: Dispatcher,
    outcomes: Outcomes,
    scheduler: Scheduler,
    feeds: Feeds,
    keeper: Keeper | None,
    dead_letters: DeadLetters,
    *,
    uptime: float,
) -> dict[str, Any]:
    """The counts of one nexus now; see :meth:`~async_nexus.AsyncEventNexus.stats`."""
    routes = list(router.routes.items())
    if router.overflow.dispatched:
        routes.append(("(other types)", router.overflow))
    by_type = {event_type: route.counts() for event_type, route in routes}
    totals = dict.fromkeys(("dispatched", "filtered", "unhandled", "failed", "in_flight"), 0)
    for per_type in by_type.values():
        for name, count in per_type.items():
            totals[name] += count
    # Everything accepted is either dispatched or still queued: no counter on ingest.
    ingested = totals["dispatched"] + len(queue) - dispatcher.retries_queued
    by_source = feeds.delivered_by_name()
    by_source["secondary"] = admission.secondary
    by_source["ingest()"] = ingested - sum(by_source.values())
    return {
        "ingested": ingested,
        **totals,
        "errors": outcomes.errors,
        "dead_letters": dead_letters.count(),
        "scheduled": len(scheduler.events),
        "retrying": scheduler.retrying,
        "queued": len(queue),
        "high_water": queue.high_water,
        "uptime": uptime,
        "by_type": by_type,
        "by_source": by_source,
        **({} if keeper is None else {"journal": keeper.journal.stats()}),
    }
