"""What becomes of a failure: it is counted, reported to the error hook, maybe a dead letter.

The loop, the lanes and the sources call :class:`Outcomes` when something fails. A
handler's *final* failure (after its retries, if it has ``retry=``) makes its event a dead
letter: ``on_dead_letter``'s callback sees it, and the event's item records it, so that a
transport moves the entry to its dead letters instead of acknowledging it. With
``fail_fast``, the first failure halts the nexus and is raised by its loop.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..errors import UnhandledEvent
from ..events import Event
from ..policy import ATTEMPT
from .dead_letters import Draft, draft
from .items import DispatchTracer, ErrorHook, Item, log_error
from .lifecycle import Lifecycle
from .routing import Router

# Internal: the public face is AsyncEventNexus.on_error and on_dead_letter.
__all__: list[str] = []

logger = logging.getLogger("async_nexus")

#: A span being traced, with its tracer.
Traced = tuple[DispatchTracer, Any]


class Outcomes:
    """The failures of one nexus: counts, the error hook, the dead-letter hook, fail_fast."""

    __slots__ = ("error_hook", "dead_letter", "fail_fast", "failure", "errors", "_router", "_life", "_keep")

    def __init__(
        self,
        router: Router,
        lifecycle: Lifecycle,
        keep: Callable[[Draft, Item | None], None],
        *,
        fail_fast: bool,
    ) -> None:
        self._router, self._life = router, lifecycle
        #: Where each dead letter is kept: ``keep(draft, item)``.
        self._keep = keep
        self.error_hook: ErrorHook = log_error
        self.dead_letter: Callable[[Event, BaseException], Any] | None = None
        self.fail_fast = fail_fast
        #: With fail_fast: the first failure, which the loop raises.
        self.failure: BaseException | None = None
        #: Every report to the error hook.
        self.errors = 0

    def set_error_hook(self, hook: ErrorHook) -> None:
        """Send every failure to ``hook(exception, subject)`` from now on."""
        self.error_hook = hook

    def set_dead_letter_hook(self, hook: Callable[[Event, BaseException], Any]) -> None:
        """Call ``hook(event, exception)`` for every dead letter from now on."""
        self.dead_letter = hook

    def set_fail_fast(self, fail_fast: bool) -> None:
        """Halt at the next failure (true), or report it and go on (false)."""
        self.fail_fast = fail_fast

    async def fail(
        self,
        exc: BaseException,
        event: Event,
        item: Item | None,
        traced: Traced | None,
        runner: object = None,
    ) -> None:
        """Handling ``event`` (of ``item``) by ``runner`` (what runs the handler; ``None`` if
        no handler took it) finally failed: report it, and it is a dead letter."""
        attempts = ATTEMPT.get()
        if item is not None and item.failure is None:
            item.failure = (exc, attempts)
        await self.report(exc, event, item, traced)
        try:
            self._keep(draft(event, exc, attempts, self._handler_name(runner)), item)
        except Exception as keep_exc:  # the event's handling is over all the same
            await self.notify(keep_exc, event)
        if self.dead_letter is not None:
            try:
                result = self.dead_letter(event, exc)
                if inspect.isawaitable(result):
                    await result
            except Exception as hook_exc:
                await self.notify(hook_exc, self.dead_letter)

    def _handler_name(self, runner: object) -> str | None:
        if runner is None:
            return None
        handler = self._router.handler_of(runner)
        if handler is None:
            handler = runner
        name = getattr(handler, "__qualname__", None)
        return name if isinstance(name, str) else type(handler).__qualname__

    async def report(
        self, exc: BaseException, subject: Any, item: Item | None, traced: Traced | None
    ) -> None:
        """Report a failure in the handling of ``subject`` (an event of ``item``, or a source)."""
        if isinstance(subject, Event) and not isinstance(exc, UnhandledEvent):
            self._router.route(subject.type).failed += 1
        if traced is not None:
            tracer, span = traced
            tracer.failed(span, exc)
        if item is not None and item.waiter is not None and subject is item.event:
            if not item.waiter.done():
                item.waiter.set_exception(exc)  # request() raises it at once
        await self.notify(exc, subject)

    async def notify(self, exc: BaseException, subject: Any) -> None:
        """Count ``exc``, halt if ``fail_fast``, and call the error hook."""
        self.errors += 1
        if self.fail_fast:
            if self.failure is None:
                self.failure = exc
            self._life.halt(f"fail_fast stopped it at the first failure, {type(exc).__name__}: {exc}")
        try:
            result = self.error_hook(exc, subject)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("async_nexus: the error hook raised while reporting %r", exc)
