"""The receiving side of the distributed demo: readings arrive from Redis, handlers aggregate them.

Run ``python demo/distributed/worker.py --redis-url redis://127.0.0.1:6379/0 --seconds 10``.
A :class:`~async_nexus.transports.redis.RedisStreamReceiver` reads the stream as one consumer
of the group ``workers``: start the worker twice and the two share the readings between them
(competing consumers). Each reading is printed and added to a running average per sensor;
after ``--seconds`` the nexus stops gracefully (what was dispatched is acknowledged), the
averages are printed and the program exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from readings import CODEC, DEFAULT_STREAM, DEFAULT_URL, Reading

from async_nexus import AsyncEventNexus
from async_nexus.transports.redis import RedisStreamReceiver


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_URL, help="Redis URL (default: %(default)s)")
    parser.add_argument("--stream", default=DEFAULT_STREAM, help="stream to read (default: %(default)s)")
    parser.add_argument("--group", default="workers", help="consumer group (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="run this long (default: %(default)s)")
    return parser.parse_args(argv)


class Averages:
    """A handler keeping a running average per sensor."""

    def __init__(self) -> None:
        self.totals: defaultdict[str, float] = defaultdict(float)
        self.counts: defaultdict[str, int] = defaultdict(int)

    def __call__(self, event: Reading, queue: Any) -> None:
        sensor, celsius = event.payload["sensor"], event.payload["celsius"]
        self.totals[sensor] += celsius
        self.counts[sensor] += 1
        print(f"reading #{event.id} from {sensor}: {celsius:.2f} °C")

    def report(self) -> None:
        for sensor in sorted(self.counts):
            average = self.totals[sensor] / self.counts[sensor]
            print(f"average {sensor}: {average:.2f} °C over {self.counts[sensor]} readings")


async def main(args: argparse.Namespace) -> int:
    nexus = AsyncEventNexus()
    averages = Averages()
    nexus.add_handler(Reading, averages)
    nexus.add_producer(RedisStreamReceiver(args.redis_url, args.stream, group=args.group, codec=CODEC))
    task = nexus.start()
    await asyncio.sleep(args.seconds)
    nexus.stop()
    await task
    averages.report()
    print(f"worker: handled {sum(averages.counts.values())} readings; stopped gracefully")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise SystemExit(asyncio.run(main(parse_args())))
