"""OpenTelemetry tracing for a nexus (extra ``[otel]``): each dispatch is a span.

>>> from async_nexus.tracing import instrument
>>> nexus = AsyncEventNexus()
>>> instrument(nexus)

Once a nexus is instrumented:

* every event it dispatches gets a span ``dispatch <type>`` with the event's type and id
  and an ``async_nexus.outcome`` of ``handled``, ``filtered``, ``unhandled`` or ``failed``;
  a handler's failure is recorded on the span as an exception, and sets its status to error;
* the span's trace context is written into the event's ``traceparent`` header (W3C trace
  context) before any handler runs, so a boundary, a ZeroMQ or Redis sender carries it
  along, and the dispatch on the other side, in another nexus or another process, becomes
  a child span in the same trace;
* events queued by handlers, or ingested inside a span of the caller (a web request, say),
  carry the current context the same way.

Nexuses that are not instrumented pay nothing, and this module is the only one that
imports ``opentelemetry``.
"""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import __version__
from .errors import UnhandledEvent
from .events import Event
from .nexus import AsyncEventNexus

__all__ = ["instrument", "uninstrument"]


def instrument(nexus: AsyncEventNexus, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every dispatch of ``nexus`` with ``tracer_provider`` (default: the global one).

    Call it before or while the loop runs; :func:`uninstrument` undoes it.
    """
    tracer = trace.get_tracer("async_nexus", __version__, tracer_provider=tracer_provider)
    nexus.trace_with(_DispatchSpans(tracer))


def uninstrument(nexus: AsyncEventNexus) -> None:
    """Stop tracing ``nexus``; events already being dispatched finish their spans."""
    nexus.trace_with(None)


class _Dispatch:
    """One dispatch being traced."""

    __slots__ = ("span", "token", "outcome")

    def __init__(self, span: trace.Span, token: contextvars.Token[Any] | None) -> None:
        self.span, self.token, self.outcome = span, token, "handled"


class _DispatchSpans:
    """The tracer the dispatch loop calls (see :class:`~async_nexus.items.DispatchTracer`)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start(self, event: Event) -> _Dispatch:
        # The parent is what the event carries, never whatever the loop task happens to
        # hold: events from unrelated sources must not nest under each other.
        parent = propagate.extract(event.headers or {}, context=context.Context())
        span = self._tracer.start_span(
            f"dispatch {event.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"async_nexus.event.type": str(event.type), "async_nexus.event.id": str(event.id)},
        )
        token = context.attach(trace.set_span_in_context(span))
        headers = dict(event.headers or {})
        propagate.inject(headers)
        event.headers = headers
        return _Dispatch(span, token)

    def filtered(self, dispatch: _Dispatch) -> None:
        dispatch.outcome = "filtered"

    def failed(self, dispatch: _Dispatch, exc: BaseException) -> None:
        unhandled = isinstance(exc, UnhandledEvent)
        dispatch.outcome = "unhandled" if unhandled else "failed"
        if not unhandled:
            dispatch.span.record_exception(exc)
        dispatch.span.set_status(Status(StatusCode.ERROR, str(exc)))

    def release(self, dispatch: _Dispatch) -> None:
        # The loop leaves the span's context; the tasks of concurrent handlers, created
        # inside it, keep it, and the last of them ends the span.
        if dispatch.token is not None:
            context.detach(dispatch.token)
            dispatch.token = None

    def end(self, dispatch: _Dispatch) -> None:
        dispatch.span.set_attribute("async_nexus.outcome", dispatch.outcome)
        self.release(dispatch)
        dispatch.span.end()

    def inject(self, event: Event) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return
        if event.headers and "traceparent" in event.headers:
            return  # it already belongs to a trace: keep it there
        headers = dict(event.headers or {})
        propagate.inject(headers)
        event.headers = headers
