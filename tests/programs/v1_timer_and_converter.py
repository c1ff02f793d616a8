#! /usr/bin/python3
'''Description: a program written the way async-nexus 1.0.2's demos are written

A timer counting up, a pull-mode converter, a generator converter that runs out, a filter, a fanout made
with create_handler_coro and secondary events, all spelled with 1.0.2's names. It prints
what it handles and stops once it has seen everything. tests/test_compat_v1.py runs it.

Usage: python tests/programs/v1_timer_and_converter.py
'''

# 1.0's demos format with %, and so does this program.
# ruff: noqa: UP031

import asyncio
from typing import Callable, List, Type

import async_nexus

TICK_TYPE = 100
CONVERTED_TYPE = 50
ECHO_TYPE = 77
seen: dict = {"ticks": 0, "converted": 0, "echoes": 0, "kettles": 0, "teapot": False}


class Kettle(async_nexus.NamedEvent):
    """A named event; its type is its class name."""


class DemoEventConverter(async_nexus.SimpleEventConverter):
    """async_nexus.Event source used in pull mode."""

    def __init__(self, id_fn: Callable, limit: int):
        super().__init__()
        self.id_fn = id_fn
        self.left = limit

    async def obtain_event(self) -> async_nexus.EventTypeID:
        if not self.left:
            await asyncio.get_running_loop().create_future()  # nothing more; wait to be stopped
        self.left -= 1
        await asyncio.sleep(0.01)
        return async_nexus.Event(self.id_fn(), CONVERTED_TYPE, 0, "hi")


class KettleConverter(async_nexus.EventConverter):
    """async_nexus.Event source that uses a generator."""

    def __init__(self, id_fn: Callable):
        super().__init__()
        self.id_fn = id_fn

    async def event_generator(self):
        for payload in ("boiling", "odd one out", "whistling"):
            await asyncio.sleep(0.01)
            yield make_named(Kettle, self.id_fn(), payload)


class Both(async_nexus.EventConsumer):
    """Hands each event to several handlers, the way 1.0 code called handlers itself."""

    def __init__(self, *handlers: async_nexus.GenericHandler):
        self.handlers = handlers

    async def handle(self, event: async_nexus.Event, queue: asyncio.Queue) -> None:
        for handler in self.handlers:
            await async_nexus.create_handler_coro(handler, event, queue)


def make_named(cls: Type[async_nexus.NamedEventTypeVar], id: int,
               payload: str) -> async_nexus.NamedEventTypeVar:
    return cls(id, payload)


def register_all(nexus: async_nexus.AsyncEventNexus, types: List[async_nexus.EventTypeID],
                 handler: async_nexus.GenericHandler) -> None:
    for event_type in types:
        nexus.add_handler(event_type, handler)


async def teapot(nexus: async_nexus.AsyncEventNexus) -> None:
    await asyncio.sleep(0.02)
    event = async_nexus.Event(1001, 99, 0, "TEAPOT!")
    await nexus.ingest(event)


def go_on_or_stop(nexus: async_nexus.AsyncEventNexus) -> None:
    counts = (seen["ticks"], seen["converted"], seen["echoes"], seen["kettles"], seen["teapot"])
    if counts == (3, 3, 3, 2, True):
        nexus.stop()


async def main() -> None:
    with async_nexus.AsyncEventNexus() as nexus:
        timer = async_nexus.Timer(interval=0.05, type=async_nexus.Timer.COUNT_UP, count=3,
                                  event_type=TICK_TYPE, event_factory=nexus)

        async def tick_handler(event: async_nexus.Event, queue: asyncio.Queue):
            seen["ticks"] += 1
            print("tick %d of %d (from %d by %d)" % (
                event.payload, timer.ending_value, timer.starting_value, timer.direction_value))
            go_on_or_stop(nexus)

        async def converted_handler(event: async_nexus.Event, queue: asyncio.Queue):
            seen["converted"] += 1
            print("[%d] %s" % (event.id, event.payload))
            await queue.put(async_nexus.Event(nexus.next_id(), ECHO_TYPE, 0, "echo of %d" % event.id))

        async def counting_handler(event: async_nexus.Event, queue: asyncio.Queue):
            seen["echoes"] += 1
            go_on_or_stop(nexus)

        async def kettle_handler(event: async_nexus.Event, queue: asyncio.Queue):
            seen["kettles"] += 1
            print("kettle: %s" % event.payload)
            go_on_or_stop(nexus)

        async def teapot_handler(event: async_nexus.Event, queue: asyncio.Queue):
            seen["teapot"] = True
            print("teapot ID: ", event.id)
            go_on_or_stop(nexus)

        async def default_handler(event: async_nexus.Event, queue: asyncio.Queue):
            print("type=%s [%d] %s" % (str(event.type), event.id, event.payload))

        async def odd_kettles(event: async_nexus.Event, queue: asyncio.Queue) -> bool:
            return event.payload == "odd one out"

        drop: async_nexus.FilterFunc = odd_kettles
        nexus.add_filter(drop)
        nexus.add_handler(TICK_TYPE, tick_handler)
        nexus.add_handler(CONVERTED_TYPE, converted_handler)
        nexus.add_handler(ECHO_TYPE, Both(counting_handler, default_handler))
        register_all(nexus, [Kettle.__qualname__], kettle_handler)
        nexus.add_handler(99, teapot_handler)

        nexus.add_producer(timer)
        nexus.add_converter(DemoEventConverter(nexus.next_id, 3))
        nexus.register(KettleConverter(nexus.next_id))
        print("timer registered with this nexus:", nexus in timer.nexus_set, len(timer.nexus_set))

        print("timer task before the loop:", timer.task)
        loop_task = nexus.start()
        print("loop task kept:", loop_task is nexus.loop_task)
        teapot_task = asyncio.create_task(teapot(nexus))
        await loop_task
        await teapot_task
        print("next event id:", nexus.current_event_id)
        print("timer task after the loop:", timer.task)
        print("stopped")


if __name__ == '__main__':
    asyncio.run(main())
