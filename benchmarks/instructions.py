"""Instructions per event, counted by callgrind: what a queue between producer and handler costs.

``python -m benchmarks.instructions`` runs the shape of scenario 1 (a producer awaiting
each ingest, one ``async def`` handler) for each implementation below under
``valgrind --tool=callgrind``, once with 20,000 and once with 70,000 events. It prints the
difference divided by 50,000: the instructions one event costs, without start-up. Unlike a
timing, the count comes out the same on every run, however busy the machine is, which is
what a comparison on a shared machine needs. ``minimal`` is the least a queue with an
awaitable ingest can do: append to a deque, wake the consumer, look the handler up in a
dict. It has no priorities, bound, filters, counts or error handling.

Under callgrind a program runs about 40 times slower, and the nexus's loop yields to the
event loop every ``yield_every`` seconds of dispatching (10 ms): counted as it is, a run
would yield 40 times as often per event as a real one does. The ``nexus`` shape gives the
loop a budget 40 times as long (:data:`YIELD_EVERY_UNDER_CALLGRIND`), so that what is
counted is what an event costs at the rate of yields a real run has; ``nexus_10ms`` keeps
the default, to show what the dilated yields add.

Run as ``python benchmarks/instructions.py SHAPE N`` it is the program being counted.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

SHAPES = ("ceiling", "minimal", "nexus", "nexus_10ms", "plain_queue", "nexus_v1")
#: The nexus's default 10 ms between yields, times callgrind's slowdown (about 40 here).
YIELD_EVERY_UNDER_CALLGRIND = 0.4
SMALL, LARGE = 20_000, 70_000


async def _handler(event: Any, queue: Any) -> None:
    pass


async def ceiling(n: int) -> None:
    from async_nexus import Event

    for i in range(n):
        await _handler(Event(i, 1), None)


async def minimal(n: int) -> None:
    from async_nexus import Event

    loop = asyncio.get_running_loop()
    pending: deque[Any] = deque()
    handlers = {1: _handler}
    sleeping: list[asyncio.Future[None]] = []

    async def ingest(event: Any) -> None:
        pending.append(event)
        if sleeping:
            sleeping.pop().set_result(None)
        if len(pending) >= 512:  # let the consumer run, as the nexus does
            await asyncio.sleep(0)

    async def consume() -> None:
        while True:
            while pending:
                event = pending.popleft()
                await handlers[event.type](event, None)
            sleeping.append(loop.create_future())
            await sleeping[-1]

    consumer = asyncio.ensure_future(consume())
    for i in range(n):
        await ingest(Event(i, 1))
    while pending:
        await asyncio.sleep(0)
    consumer.cancel()


async def plain_queue(n: int) -> None:
    from async_nexus import Event

    queue: asyncio.Queue[Any] = asyncio.Queue(4096)
    handlers = {1: _handler}

    async def consume() -> None:
        while True:
            event = await queue.get()
            await handlers[event.type](event, queue)
            queue.task_done()

    consumer = asyncio.ensure_future(consume())
    for i in range(n):
        await queue.put(Event(i, 1))
    await queue.join()
    consumer.cancel()


async def nexus(n: int, yield_every: float = YIELD_EVERY_UNDER_CALLGRIND) -> None:
    from async_nexus import AsyncEventNexus, Event

    hub = AsyncEventNexus(yield_every=yield_every)
    hub.add_handler(1, _handler)
    task = hub.start()
    for i in range(n):
        await hub.ingest(Event(i, 1))
    await hub.join()
    hub.stop()
    await task


async def nexus_10ms(n: int) -> None:
    await nexus(n, yield_every=0.010)


async def nexus_v1(n: int) -> None:
    from async_nexus import AsyncEventNexus, Event, SimpleEventConverter

    class Idle(SimpleEventConverter):  # 1.0.2 needs one to keep looping
        async def obtain_event(self) -> Any:
            await asyncio.get_running_loop().create_future()

    hub = AsyncEventNexus()
    hub.add_handler(1, _handler)
    hub.add_converter(Idle())
    hub.start()
    await asyncio.sleep(0)
    for i in range(n):
        await hub.ingest(Event(i, 1, 0, None))  # dispatched within the call
    hub.stop()


def count(python: str, shape: str, events: int) -> int:
    """The instructions callgrind counts for one run of ``shape``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        [*command, python, __file__, shape, str(events)],
        capture_output=True,
        text=True,
        env=env,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"callgrind failed on {shape}: {done.stderr.strip()[-400:]}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    from . import peer_venv

    print(f"instructions per event, scenario 1's shape ({LARGE:,} minus {SMALL:,} events):")
    for shape in SHAPES:
        python = sys.executable
        if shape == "nexus_v1":
            venv, why = peer_venv.ensure(uvloop=False)
            if venv is None:
                print(f"  {shape:12} n/a: {why}")
                continue
            python = str(venv)
        per_event = (count(python, shape, LARGE) - count(python, shape, SMALL)) / (LARGE - SMALL)
        print(f"  {shape:12} {per_event:8,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and Path(sys.argv[0]).resolve() == Path(__file__).resolve():
        asyncio.run(globals()[sys.argv[1]](int(sys.argv[2])))
    else:
        sys.exit(main())
