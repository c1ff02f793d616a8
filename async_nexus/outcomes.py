"""What happens to a failure: it is counted, reported to the error hook, maybe a dead letter.

:class:`Outcomes` is the part of the :class:`~async_nexus.dispatch.Dispatcher` that the
loop, the lanes and the sources call when something fails, kept apart so that the loop
reads in one sitting. A handler's *final* failure (after its retries, if it has
``retry=``) makes its event a dead letter: ``on_dead_letter``'s callback sees it, and the
event's item records it, so that a transport moves the entry to its dead letters instead
of acknowledging it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .errors import UnhandledEvent
from .events import Event
from .items import ATTEMPT, DispatchTracer, ErrorHook, Item
from .routing import Router

# Internal: the public face is AsyncEventNexus.on_error and on_dead_letter.
__all__: list[str] = []

logger = logging.getLogger("async_nexus")


class Outcomes:
    """Failure reporting of a dispatcher; the attributes are the dispatcher's own."""

    __slots__ = (
        "error_hook", "dead_letter", "fail_fast", "failure", "on_halt", "halted", "interrupt",
        "stop_requested", "counts",
    )  # fmt: skip

    # Set by the dispatcher.
    router: Router
    tracer: DispatchTracer | None
    current: Item | None
    span: Any
    error_hook: ErrorHook
    dead_letter: Callable[[Event, BaseException], Any] | None
    fail_fast: bool
    failure: BaseException | None
    #: fail_fast: the nexus refuses ingest from now on.
    on_halt: Callable[[], None]
    stop_requested: bool
    halted: bool
    interrupt: bool
    counts: dict[str, int]

    def nudge(self) -> None:
        raise NotImplementedError

    async def report(self, exc: BaseException, subject: Any) -> None:
        """Report a failure in the loop's dispatch of ``subject`` (or of a source)."""
        await self.report_for(exc, subject, self.current, self.span)

    async def fail(self, exc: BaseException, event: Event) -> None:
        """The loop's handling of ``event`` finally failed: it is a dead letter."""
        await self.fail_for(exc, event, self.current, self.span)

    async def fail_for(self, exc: BaseException, event: Event, item: Item | None, span: Any) -> None:
        """Handling ``event`` (of ``item``) finally failed: report it, and it is a dead letter."""
        if item is not None and item.failure is None:
            item.failure = (exc, ATTEMPT.get())
        await self.report_for(exc, event, item, span)
        if self.dead_letter is not None:
            try:
                result = self.dead_letter(event, exc)
                if inspect.isawaitable(result):
                    await result
            except Exception as hook_exc:
                await self.notify(hook_exc, self.dead_letter)

    async def report_for(self, exc: BaseException, subject: Any, item: Item | None, span: Any) -> None:
        """Report a failure in the handling of ``item`` (its ``span``, if traced)."""
        if isinstance(subject, Event) and not isinstance(exc, UnhandledEvent):
            self.router.route(subject.type).failed += 1
        if span is not None and self.tracer is not None:
            self.tracer.failed(span, exc)
        if item is not None and item.waiter is not None and subject is item.event:
            if not item.waiter.done():
                item.waiter.set_exception(exc)  # request() raises it at once
        await self.notify(exc, subject)

    async def notify(self, exc: BaseException, subject: Any) -> None:
        """Count ``exc``, stop if ``fail_fast``, and call the error hook."""
        self.counts["errors"] += 1
        if self.fail_fast:
            if self.failure is None:
                self.failure = exc
            self.halted = self.interrupt = self.stop_requested = True
            self.on_halt()
            self.nudge()
        try:
            result = self.error_hook(exc, subject)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("async_nexus: the error hook raised while reporting %r", exc)
