"""Helpers for the tests of programs built on Async Nexus.

* :func:`running`: ``async with running(nexus):`` starts the nexus, and on exit stops it
  gracefully, awaits it and re-raises what killed its loop.
* :class:`Recorder`: a handler that records what it receives; ``await
  recorder.wait_for(3)`` or ``await recorder.wait_for(lambda event: ...)`` waits for it.
* :func:`feed`: ingest a list of events and wait until every one has been dispatched.

Every wait has a timeout, and a timeout says what was awaited and what arrived instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Union, overload

from .consumers import EventConsumer, HandlerLike, as_callable
from .errors import BadType, LoopStopped
from .events import Event
from .nexus import AsyncEventNexus, NexusState

__all__ = ["running", "Recorder", "feed"]

#: What :meth:`Recorder.wait_for` waits for: a number of events, or an event that matches.
Condition = Union[int, Callable[[Event], Any]]


def _loop_failure(task: asyncio.Task[Any]) -> BaseException | None:
    if task.done() and not task.cancelled():
        return task.exception()
    return None


@contextlib.asynccontextmanager
async def running(nexus: AsyncEventNexus, *, timeout: float = 5.0) -> AsyncIterator[AsyncEventNexus]:
    """Run ``nexus`` for the body of an ``async with``; stop it gracefully on the way out.

    On exit the nexus is stopped, what is queued is dispatched, and the loop task is awaited
    for at most ``timeout`` seconds; if the loop failed (a ``fail_fast`` nexus whose handler
    raised, say) that exception is raised here. If the loop fails while the body is still
    waiting for something, the body is interrupted and the loop's exception raised at once,
    instead of the body waiting out its own timeout.

    .. code-block:: python

        async with running(AsyncEventNexus(fail_fast=True)) as nexus:
            nexus.add_handler(1, recorder)
            await feed(nexus, [Event(1, 1)])

    :raises TimeoutError: the loop did not stop within ``timeout`` seconds (a handler is
        blocked); the loop task is cancelled.
    """
    task = nexus.start()
    body = asyncio.current_task()
    inside = True
    interrupted = False

    def on_loop_done(done: asyncio.Task[Any]) -> None:
        nonlocal interrupted
        if inside and body is not None and _loop_failure(done) is not None:
            interrupted = True
            body.cancel()

    task.add_done_callback(on_loop_done)
    try:
        yield nexus
    except asyncio.CancelledError:
        inside = False
        if not interrupted:
            await _stop(nexus, task, timeout)
            raise
        _uncancel(body)
        failure = _loop_failure(task)
        assert failure is not None
        raise failure from None
    except BaseException:
        inside = False
        await _swallow_our_cancel(interrupted, body)
        await _stop(nexus, task, timeout)
        raise
    inside = False
    await _swallow_our_cancel(interrupted, body)
    await _stop(nexus, task, timeout)


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    uncancel = getattr(task, "uncancel", None)  # Python 3.11+
    if uncancel is not None:
        uncancel()


async def _swallow_our_cancel(interrupted: bool, body: asyncio.Task[Any] | None) -> None:
    # The body went on after our cancel(): it swallowed the CancelledError, or our cancel is
    # still pending and would hit the caller's next await. Take it back either way; _stop()
    # then raises the loop's failure.
    if interrupted:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass
        _uncancel(body)


async def _stop(nexus: AsyncEventNexus, task: asyncio.Task[None], timeout: float) -> None:
    nexus.stop()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        queued = nexus.stats()["queued"]
        task.cancel()
        await asyncio.wait({task})
        raise TimeoutError(
            f"the nexus did not stop within {timeout:g}s of stop() ({queued} events still queued); "
            "a handler or source is probably blocked. The loop task was cancelled"
        )
    await task  # re-raise the loop's failure, if any


class Recorder(EventConsumer):
    """A handler that records every event it is given, in order, in :attr:`events`.

    Register it as any handler (``nexus.add_handler(42, recorder)``), in a fanout, or as
    the default handler; as a filter (``nexus.add_filter(recorder)``) it records every event
    and lets each one through. With ``handler`` (sync or ``async``), it passes each event on to
    it and records the event once the handler has returned or raised, so waiting for the
    recorder waits for the handler's work; what the handler returns is passed on too.
    :meth:`handle` is ``async`` exactly when ``handler`` is.

    :param handler: optional handler to wrap.
    :param name: how timeouts name this recorder.
    """

    def __new__(cls, handler: HandlerLike | None = None, *, name: str = "recorder") -> Recorder:
        if cls is Recorder and handler is not None and as_callable(handler)[1]:
            cls = _AsyncRecorder
        return super().__new__(cls)

    def __init__(self, handler: HandlerLike | None = None, *, name: str = "recorder") -> None:
        self.events: list[Event] = []
        self.name = name
        self._handler = as_callable(handler)[0] if handler is not None else None
        self._waiters: list[tuple[Condition, asyncio.Future[Any]]] = []

    def handle(self, event: Any, queue: Any) -> Any:
        """Record ``event`` (after the wrapped handler, if any, has run)."""
        if self._handler is None:
            self._record(event)
            return None
        try:
            return self._handler(event, queue)
        finally:
            self._record(event)

    def __call__(self, event: Any, queue: Any) -> Any:
        """The same as :meth:`handle`, for code that calls handlers directly."""
        return self.handle(event, queue)

    def __len__(self) -> int:
        return len(self.events)

    def clear(self) -> None:
        """Forget the events recorded so far (waits in progress go on)."""
        self.events.clear()

    @overload
    async def wait_for(self, condition: int, *, timeout: float = ...) -> list[Event]: ...

    @overload
    async def wait_for(self, condition: Callable[[Event], Any], *, timeout: float = ...) -> Event: ...

    async def wait_for(self, condition: Condition, *, timeout: float = 5.0) -> Any:
        """Wait until ``condition`` holds; return what satisfied it.

        ``condition`` is a number ``n``: wait until at least ``n`` events were recorded, and
        return a copy of :attr:`events`. Or a predicate ``f(event)``: wait until an event
        for which it is true was recorded (or already is), and return the first such event.

        :raises TimeoutError: not within ``timeout`` seconds; the message says what was
            awaited and which events arrived.
        :raises ~async_nexus.errors.BadType: (a :class:`TypeError`) ``condition`` is
            neither a number nor a callable.
        """
        if isinstance(condition, bool) or not (isinstance(condition, int) or callable(condition)):
            raise BadType(f"wait_for() takes a number of events or a predicate f(event), got {condition!r}")
        met, value = self._check(condition)
        if met:
            return value
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (condition, waiter)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(self._timeout_message(condition, timeout)) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _check(self, condition: Condition) -> tuple[bool, Any]:
        if isinstance(condition, int):
            return len(self.events) >= condition, list(self.events)
        for event in self.events:
            if condition(event):
                return True, event
        return False, None

    def _record(self, event: Event) -> None:
        self.events.append(event)
        for condition, waiter in list(self._waiters):
            if waiter.done():
                continue
            try:
                if isinstance(condition, int):
                    if len(self.events) >= condition:
                        waiter.set_result(list(self.events))
                elif condition(event):
                    waiter.set_result(event)
            except Exception as exc:  # a broken predicate fails the wait, not the handler
                waiter.set_exception(exc)

    def _timeout_message(self, condition: Condition, timeout: float) -> str:
        if isinstance(condition, int):
            wanted = f"{condition} event{'s' if condition != 1 else ''}"
        else:
            wanted = f"an event matching {_describe_predicate(condition)}"
        return f"{self.name}: waited {timeout:g}s for {wanted}; {_describe_events(self.events)}"

    def __repr__(self) -> str:
        return f"<Recorder {self.name!r}: {len(self.events)} events>"


class _AsyncRecorder(Recorder):
    """A :class:`Recorder` wrapping an ``async`` handler: its ``handle`` is ``async`` too."""

    async def handle(self, event: Any, queue: Any) -> Any:
        assert self._handler is not None
        try:
            return await self._handler(event, queue)
        finally:
            self._record(event)


def _describe_predicate(predicate: Callable[..., Any]) -> str:
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    code = getattr(predicate, "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})"
    return name


def _describe_events(events: list[Event], *, shown: int = 10) -> str:
    if not events:
        return "none arrived"
    listed = ", ".join(f"Event(id={e.id!r}, type={e.type!r})" for e in events[-shown:])
    more = f"the last {shown}: " if len(events) > shown else ""
    return f"{len(events)} arrived ({more}{listed})"


async def feed(nexus: AsyncEventNexus, events: Iterable[Event], *, timeout: float = 5.0) -> None:
    """Ingest ``events`` in order and wait until all have been dispatched (``nexus.join()``).

    The nexus must be running (``async with running(nexus):`` or ``nexus.start()``).
    Secondary events the handlers emit are waited for too. If the loop stops on a failure
    meanwhile, that failure is raised.

    :raises TimeoutError: the events were not ingested and dispatched within ``timeout``
        seconds together; the message says how far it got.
    """
    state = nexus.state
    if state not in (NexusState.STARTING, NexusState.LOOPING):
        raise RuntimeError(
            f"feed() needs a running nexus, but it is {state.name}; start it first: "
            "async with running(nexus): ... or task = nexus.start()"
        )
    events = list(events)
    ingested = 0
    task = nexus.task

    async def ingest_all_then_join() -> None:
        nonlocal ingested
        for event in events:
            await nexus.ingest(event)
            ingested += 1
        await nexus.join()

    try:
        await asyncio.wait_for(ingest_all_then_join(), timeout)
    except asyncio.TimeoutError:
        queued = nexus.stats()["queued"]
        if ingested < len(events):
            progress = f"only {ingested} of {len(events)} events were ingested: the queue stayed full"
        else:
            progress = f"all {len(events)} events were ingested but {queued} are still queued"
        raise TimeoutError(
            f"feed() timed out after {timeout:g}s: {progress} (nexus {nexus.state.name}); "
            "a handler is probably blocked or slow"
        ) from None
    except LoopStopped:
        # Refused because the loop is failing (fail_fast)? Then its failure is the news.
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
            failure = _loop_failure(task)
            if failure is not None:
                raise failure from None
        raise
    if task is not None:
        failure = _loop_failure(task)
        if failure is not None:
            raise failure
    queued = nexus.stats()["queued"]
    if nexus.state is NexusState.STOPPED and queued:
        raise RuntimeError(f"feed(): the nexus stopped with {queued} events not dispatched")
