"""A target for ``python -m async_nexus run tests.daemons.console_shop:factory --console ...``.

A timer ticks every 20 ms; each tick is handled, and every fifth fails and becomes a dead
letter, so the console of tests/test_console_runner.py has counts that move and dead
letters to list.
"""

from __future__ import annotations

from typing import Any

from async_nexus import AsyncEventNexus, Event, Timer


def factory() -> AsyncEventNexus:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)  # the dead letters keep what failed

    def tick(event: Event, queue: Any) -> None:
        if event.payload % 5 == 0:
            raise RuntimeError(f"tick {event.payload} fails, as every fifth does")

    nexus.add_handler("tick", tick)
    nexus.add_producer(Timer(0.02, event_type="tick", type=Timer.ONGOING))
    return nexus
