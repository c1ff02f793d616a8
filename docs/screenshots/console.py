"""Take the screenshot of the live console that docs/operating.rst shows (docs/_static/console.png).

Runs a small shop for a while — orders handled four at a time, keyed by customer, a mail
handler, a sensor timer — with some orders failing, so the chart has lines and the dead
letters a few rows; then opens the console in Debian's Chromium (as the tests do) and
takes the page.

    .venv/bin/python docs/screenshots/console.py [--seconds 40]

Needs the ``[test]`` extra (Playwright) and ``/usr/bin/chromium``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from console_support import chromium  # noqa: E402

from async_nexus import AsyncEventNexus, Event, Retry, Timer  # noqa: E402
from async_nexus.console import serve_console  # noqa: E402

OUT = HERE.parent / "_static" / "console.png"


RNG = random.Random(7)


async def place_order(event: Event, queue: Any) -> None:
    await asyncio.sleep(RNG.uniform(0.005, 0.03))
    if event.payload["sku"] == "teapot-xl":
        raise LookupError(f"sku {event.payload['sku']!r} is not in the warehouse")


def send_mail(event: Event, queue: Any) -> None:
    if RNG.random() < 0.01:
        raise ConnectionError("smtp.example.org:587 refused the connection")


def record_temperature(event: Event, queue: Any) -> None:
    pass


def by_customer(event: Event) -> str:
    return str(event.payload["customer"])


def build(journal: Path) -> AsyncEventNexus:
    nexus = AsyncEventNexus(journal=journal)
    nexus.on_error(lambda exc, subject: None)  # the dead letters keep what failed
    nexus.add_handler(
        "order.placed", place_order, concurrency=4, key=by_customer, retry=Retry(attempts=2, backoff=0.05)
    )
    nexus.add_handler("mail.send", send_mail)
    nexus.add_handler("sensor.temperature", record_temperature)
    nexus.add_producer(Timer(0.1, event_type="sensor.temperature", type=Timer.ONGOING))
    return nexus


async def traffic(nexus: AsyncEventNexus) -> None:
    rng = random.Random(11)
    number = 0
    while True:
        number += 1
        wave = 1 + (number // 150) % 3  # the load changes, so the chart has a shape
        sku = "teapot-xl" if rng.random() < 0.004 else rng.choice(["tea", "cups", "kettle"])
        customer = f"c{rng.randrange(40)}"
        await nexus.ingest(Event(number, "order.placed", payload={"sku": sku, "customer": customer}))
        if number % 3 == 0:
            await nexus.ingest(Event(number, "mail.send", payload={"to": f"{customer}@example.org"}))
        await asyncio.sleep(0.03 / wave)


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        await run(build(Path(directory) / "shop.db"), seconds)
    print(f"wrote {OUT}")


async def run(nexus: AsyncEventNexus, seconds: float) -> None:
    async with nexus:
        console = await serve_console(nexus, port=0)
        feeder = asyncio.create_task(traffic(nexus))
        try:
            await asyncio.sleep(seconds)
            async with chromium() as browser:
                await browser.page.set_viewport_size({"width": 1200, "height": 1000})
                await browser.page.goto(console.url)
                await browser.page.locator("#dead-table tr[data-letter]").first.wait_for()
                await asyncio.sleep(2.5)  # two more rounds of the page's updates
                await browser.page.screenshot(path=str(OUT))
        finally:
            feeder.cancel()
            await console.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the shop runs first")
    asyncio.run(main(parser.parse_args().seconds))
