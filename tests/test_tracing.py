"""OpenTelemetry tracing: a span per dispatch, trace context carried in headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from support import Collector

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event
from async_nexus.tracing import instrument, uninstrument


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_each_dispatch_is_a_span_with_its_outcome(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)
    instrument(nexus, tracer_provider=provider)
    nexus.add_filter(lambda e, q: e.type == "spam")
    nexus.add_handler("ok", lambda e, q: None)

    def broken(event: Event, queue: Any) -> None:
        raise ValueError("broken handler")

    nexus.add_handler("bad", broken)
    async with nexus:
        for i, kind in enumerate(("ok", "spam", "bad", "nobody")):
            await nexus.ingest(Event(i, kind))
        await asyncio.wait_for(nexus.join(), 5)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"dispatch ok", "dispatch spam", "dispatch bad", "dispatch nobody"}
    outcomes = {name: (span.attributes or {})["async_nexus.outcome"] for name, span in spans.items()}
    assert outcomes == {
        "dispatch ok": "handled",
        "dispatch spam": "filtered",
        "dispatch bad": "failed",
        "dispatch nobody": "unhandled",
    }
    bad = spans["dispatch bad"]
    assert bad.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.message"] for e in bad.events if e.attributes] == ["broken handler"]
    assert spans["dispatch ok"].attributes and spans["dispatch ok"].attributes["async_nexus.event.id"] == "0"
    # unrelated events are separate traces
    assert len({span.context.trace_id for span in spans.values()}) == 4


async def test_one_trace_across_a_boundary_and_secondary_events(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    front, back = AsyncEventNexus(), AsyncEventNexus()
    instrument(front, tracer_provider=provider)
    instrument(back, tracer_provider=provider)
    boundary = AsyncEventBoundary()
    front.add_handler("order", lambda e, q: Event(0, "audit"))
    front.add_handler("audit", boundary)
    back.add_producer(boundary)
    collector = Collector()
    back.add_handler("audit", collector)
    async with back, front:
        await front.ingest(Event(1, "order"))
        await collector.wait(1)
    finished = exporter.get_finished_spans()
    assert sorted(s.name for s in finished) == ["dispatch audit", "dispatch audit", "dispatch order"]
    assert len({span.context.trace_id for span in finished}) == 1
    (order,) = (s for s in finished if s.name == "dispatch order")
    (front_audit,) = (s for s in finished if s.parent and s.parent.span_id == order.context.span_id)
    (back_audit,) = (s for s in finished if s.parent and s.parent.span_id == front_audit.context.span_id)
    assert back_audit.name == "dispatch audit"
    assert collector.events[0].headers and "traceparent" in collector.events[0].headers


async def test_uninstrumented_nexus_leaves_headers_alone(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    nexus = AsyncEventNexus()
    instrument(nexus, tracer_provider=provider)
    uninstrument(nexus)
    collector = Collector()
    nexus.add_handler(1, collector)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await collector.wait(1)
    assert collector.events[0].headers is None
    assert exporter.get_finished_spans() == ()


async def test_one_trace_from_a_sender_process_to_the_handler_in_a_receiver_process(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Any
) -> None:
    import json
    import os
    import sys
    import uuid
    from pathlib import Path

    from redis_server import RedisServer

    from async_nexus.transports.redis import RedisStreamSender

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = RedisServer().start()
        url = server.url
    stream = f"trace:{uuid.uuid4().hex}"
    script = Path(__file__).resolve().parent / "tracing_receiver_process.py"
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, stream, "traced", "3", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert receiver.stdout is not None
        # The named group starts at the stream's beginning: nothing sent now can be missed.
        assert await asyncio.wait_for(receiver.stdout.readline(), 20) == b"ready\n"
        sender = RedisStreamSender(url, stream)
        nexus = AsyncEventNexus()
        instrument(nexus, tracer_provider=provider)
        nexus.add_handler("order", lambda e, q: Event(e.id, "shipping", 0, e.payload))  # a secondary
        nexus.add_handler("shipping", sender)
        nexus.add_handler("audit", sender)
        async with nexus:
            await nexus.ingest(Event(1, "order", 0, "book"))
            await nexus.ingest(Event(2, "order", 0, "pen"))
            await nexus.ingest(Event(3, "audit"))
            await asyncio.wait_for(nexus.join(), 10)
            await sender.flush(timeout=10)
        await sender.close()
        out, _ = await asyncio.wait_for(receiver.communicate(), 30)
        assert receiver.returncode == 0
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
        if server is not None:
            server.close()
    remote = [json.loads(line) for line in out.decode().splitlines()]
    local = exporter.get_finished_spans()
    assert len(remote) == 3 and len(local) == 5  # 2 orders, 2 shippings, 1 audit
    shipped_from = {s.context.span_id: s for s in local if s.name in ("dispatch shipping", "dispatch audit")}
    for span in remote:
        parent = shipped_from[span["parent"]]  # the sending dispatch is the parent
        assert span["trace"] == parent.context.trace_id
    orders = {s.context.trace_id for s in local if s.name == "dispatch order"}
    assert len(orders) == 2
    # each order's trace reaches the handler in the other process
    assert orders <= {span["trace"] for span in remote}


async def test_the_span_of_a_concurrent_handler_ends_when_the_handler_does(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    release, both_started = asyncio.Event(), asyncio.Event()
    inner: list[Any] = []

    async def slow(event: Event, queue: Any) -> None:
        inner.append(trace.get_current_span().get_span_context())
        if len(inner) == 2:
            both_started.set()
        await release.wait()
        if event.id == 1:
            raise ValueError("late failure")

    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)
    instrument(nexus, tracer_provider=provider)
    nexus.add_handler("slow", slow, concurrency=2)
    async with nexus:
        await nexus.ingest(Event(0, "slow"))
        await nexus.ingest(Event(1, "slow"))
        await asyncio.wait_for(both_started.wait(), 5)
        assert exporter.get_finished_spans() == ()  # still handling: no span has ended
        release.set()
        await asyncio.wait_for(nexus.join(), 5)
    spans = {(span.attributes or {})["async_nexus.event.id"]: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"0", "1"}
    assert (spans["0"].attributes or {})["async_nexus.outcome"] == "handled"
    assert (spans["1"].attributes or {})["async_nexus.outcome"] == "failed"
    assert spans["1"].status.status_code is StatusCode.ERROR
    # The handler ran inside its dispatch span: work it traces is a child of it.
    assert {context.span_id for context in inner} == {span.context.span_id for span in spans.values()}


async def test_a_retried_request_is_one_span_that_ends_after_the_retry(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from async_nexus import Retry, current_attempt

    nexus = AsyncEventNexus()
    instrument(nexus, tracer_provider=provider)

    @nexus.on("sum?", retry=Retry(backoff=0.01))
    async def add(event: Event, queue: Any) -> Event:
        if current_attempt() == 1:
            raise ConnectionError("not ready")
        return Event(0, "sum", 0, sum(event.payload))

    nexus.add_handler("fail?", lambda e, q: 1 / 0, retry=Retry(attempts=2, backoff=0.01))
    nexus.on_error(lambda exc, subject: None)
    async with nexus:
        assert (await nexus.request(Event(1, "sum?", 0, [1, 2]), timeout=5)).payload == 3
        with pytest.raises(ZeroDivisionError):
            await nexus.request(Event(2, "fail?"), timeout=5)
        await asyncio.wait_for(nexus.join(), 5)
    spans = [span for span in exporter.get_finished_spans() if span.name.startswith("dispatch")]
    outcomes = sorted((span.name, (span.attributes or {})["async_nexus.outcome"]) for span in spans)
    assert outcomes == [("dispatch fail?", "failed"), ("dispatch sum?", "handled")]
