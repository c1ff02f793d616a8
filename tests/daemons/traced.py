"""A target that sets an OpenTelemetry tracer provider, for the ``--trace`` tests.

Every finished span is printed on stdout as ``SPAN <name> <trace id>``. The target gives two
nexuses joined by a boundary, so a traced run shows one trace crossing from ``front`` to
``back``. Each handler prints ``HANDLED <domain> <id>``.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event


def _line(span: ReadableSpan) -> str:
    context = span.get_span_context()
    trace_id = f"{context.trace_id:032x}" if context is not None else "-"
    return f"SPAN {span.name} {trace_id}\n"


def build() -> tuple[AsyncEventNexus, AsyncEventNexus]:
    """``(back, front)``; one "order" event is queued in ``front`` and crosses to ``back``."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout, formatter=_line)))
    trace.set_tracer_provider(provider)

    back, front = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    front.add_handler("order", boundary)
    back.add_producer(boundary)

    def handled(event: Event, queue: Any) -> None:
        print(f"HANDLED back {event.id}", flush=True)

    back.add_handler("order", handled)
    front.ingest_nowait(Event(1, "order"))
    return back, front
