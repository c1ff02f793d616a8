"""A traced receiving process for tests/test_tracing.py.

``python tests/tracing_receiver_process.py URL STREAM GROUP COUNT`` receives COUNT events
from STREAM (as a member of GROUP) into an instrumented nexus, then prints one JSON line per
finished dispatch span: its trace id, span id, parent span id and name.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from async_nexus import AsyncEventNexus, Event
from async_nexus.tracing import instrument
from async_nexus.transports.redis import RedisStreamReceiver


async def main(url: str, stream: str, group: str, count: int) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    nexus = AsyncEventNexus()
    instrument(nexus, tracer_provider=provider)
    handled = asyncio.Event()
    seen: list[Event] = []

    def record(event: Event, queue: Any) -> None:
        seen.append(event)
        if len(seen) == count:
            handled.set()

    nexus.add_handler(-1, record)
    nexus.add_producer(RedisStreamReceiver(url, stream, group=group))
    async with nexus:
        print("ready", flush=True)
        await asyncio.wait_for(handled.wait(), 20)
    for span in exporter.get_finished_spans():
        print(
            json.dumps(
                {
                    "name": span.name,
                    "trace": span.context.trace_id,
                    "span": span.context.span_id,
                    "parent": span.parent.span_id if span.parent else None,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
