"""What :meth:`~async_nexus.AsyncEventNexus.stats` reports, gathered from the parts that count."""

from __future__ import annotations

import os
from typing import Any

from ..consumers import describe
from ..schedule import Scheduler
from ..watchdog import Watchdog
from .admission import Admission
from .dead_letters import DeadLetters
from .dispatch import Dispatcher
from .feeds import Feeds
from .keeper import Keeper
from .lanes import Lane
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
    watchdog: Watchdog,
    dead_letters: DeadLetters,
    *,
    state: str,
    uptime: float,
) -> dict[str, Any]:
    """The counts of one nexus now; see :meth:`~async_nexus.AsyncEventNexus.stats`."""
    routes = list(router.routes.items())
    if router.overflow.dispatched:
        routes.append(("(other types)", router.overflow))
    by_type = {event_type: _with_handled(route.counts()) for event_type, route in routes}
    totals = dict.fromkeys(("dispatched", "filtered", "unhandled", "failed", "in_flight", "handled"), 0)
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
        "state": state,
        "by_type": by_type,
        "by_source": by_source,
        "registrations": [_registration(*entry) for entry in router.registrations()],
        "longest_loop_stall": watchdog.longest_stall,
        **({} if keeper is None else {"journal": _journal(keeper)}),
    }


def _with_handled(counts: dict[str, int]) -> dict[str, int]:
    # Derived here, not counted by the loop: what was dispatched and did not end otherwise.
    done = counts["dispatched"] - counts["filtered"] - counts["unhandled"] - counts["failed"]
    counts["handled"] = done - counts["in_flight"]
    return counts


def _registration(spec: object, handler: object, function: object, is_async: bool | None) -> dict[str, Any]:
    name = getattr(handler, "__qualname__", None) or describe(handler)
    if isinstance(spec, tuple):
        spec = list(spec)  # a range, as JSON has it
    if isinstance(function, Lane):
        key = function.key
        key_name = None if key is None else getattr(key, "__qualname__", None) or describe(key)
        return {
            "type": spec,
            "handler": name,
            "concurrency": function.limit,
            "in_flight": function.held,
            "key": key_name,
        }
    # Handled by the loop itself, one event at a time: nothing is held beside it.
    return {"type": spec, "handler": name, "concurrency": 1, "in_flight": None, "key": None}


def _journal(keeper: Keeper) -> dict[str, Any]:
    journal = keeper.journal
    size = 0
    for suffix in ("", "-wal"):
        try:
            size += os.stat(f"{journal.path}{suffix}").st_size
        except OSError:
            pass  # no log yet, or the file is gone: what is there is what is counted
    return {**journal.stats(), "bytes": size}
