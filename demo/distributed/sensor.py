"""The sending side of the distributed demo: a timer makes readings, Redis carries them.

Run ``python demo/distributed/sensor.py --redis-url redis://127.0.0.1:6379/0 --seconds 10``
(with ``demo/distributed/worker.py`` running somewhere that reaches the same Redis). Every
``--interval`` seconds a :class:`~async_nexus.Timer` tick becomes a ``Reading`` event, which a
:class:`~async_nexus.transports.redis.RedisStreamSender` appends to the stream. After
``--seconds`` the nexus stops gracefully, the sender writes what it still holds, and the
program exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

from readings import CODEC, DEFAULT_STREAM, DEFAULT_URL, Reading

from async_nexus import AsyncEventNexus, Event, Timer
from async_nexus.transports.redis import RedisStreamSender

TICK = "sensor.tick"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_URL, help="Redis URL (default: %(default)s)")
    parser.add_argument("--stream", default=DEFAULT_STREAM, help="stream to send to (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="run this long (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between readings (default: 0.1)")
    parser.add_argument("--sensors", type=int, default=3, help="how many sensors to simulate (default: 3)")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    nexus = AsyncEventNexus()
    sender = RedisStreamSender(args.redis_url, args.stream, codec=CODEC, maxlen=100_000)
    sensors = [f"sensor-{number}" for number in range(1, args.sensors + 1)]

    def measure(tick: Event, queue: Any) -> list[Event]:
        # Each tick reads every sensor: a slow sine plus noise, so the averages mean something.
        readings = []
        for index, name in enumerate(sensors):
            celsius = 20 + 5 * math.sin(tick.payload / 20 + index) + random.random()
            readings.append(Reading(nexus.next_id(), {"sensor": name, "celsius": round(celsius, 2)}))
        return readings

    nexus.add_handler(TICK, measure)
    nexus.add_handler(Reading, sender)
    nexus.add_producer(Timer(args.interval, event_type=TICK, type=Timer.ONGOING, event_factory=nexus))
    task = nexus.start()
    await asyncio.sleep(args.seconds)
    nexus.stop()
    await task
    await sender.close()  # writes what is still buffered
    print(f"sensor: sent {sender.sent} readings to stream {args.stream!r}; stopped gracefully")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise SystemExit(asyncio.run(main(parse_args())))
