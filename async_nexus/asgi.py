"""A nexus inside a Starlette or FastAPI application: started with the app, drained at shutdown.

Needs the ``[asgi]`` extra (``starlette``; FastAPI brings it too).

* :func:`nexus_lifespan` is the app's ``lifespan``: it starts the nexus when the server
  starts, puts it on ``app.state.nexus`` (and the request state), and stops it gracefully
  when the server shuts down, so events already accepted are still handled.
* In a request handler, :func:`ingest_nowait` answers ``503 Service Unavailable`` when the
  queue is full; ``await`` :func:`ingest` waits for room instead (with an optional timeout,
  then 503). Either way the response goes out at once: the handlers run afterwards, in the
  nexus's own loop task.
* :data:`EXCEPTION_HANDLERS` turns a :class:`~async_nexus.errors.QueueFull` or
  :class:`~async_nexus.errors.LoopStopped` raised by a plain ``nexus.ingest_nowait()`` into
  that 503 as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from .errors import LoopStopped, QueueFull
from .events import Event
from .nexus import AsyncEventNexus
from .runner import build_nexus

__all__ = [
    "nexus_lifespan",
    "get_nexus",
    "ingest_nowait",
    "ingest",
    "unavailable_response",
    "EXCEPTION_HANDLERS",
]

logger = logging.getLogger("async_nexus.asgi")

_RETRY_AFTER = {"Retry-After": "1"}


def nexus_lifespan(
    nexus_or_factory: Any, *, state_name: str = "nexus"
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """Return a ``lifespan`` for ``Starlette(lifespan=...)`` or ``FastAPI(lifespan=...)``.

    ``nexus_or_factory`` is a nexus, or a function or ``async`` function returning one,
    called at startup inside the server's loop. The nexus is started before the first
    request and is available as ``app.state.nexus`` and ``request.state.nexus``
    (``state_name`` changes that name). At shutdown it is stopped gracefully: sources stop,
    queued events are dispatched (up to its drain timeout); a failure of its loop is
    raised there, so the server reports it.

    To combine it with a lifespan of your own, enter it inside yours::

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with nexus_lifespan(build_nexus)(app) as state:
                ...  # your startup
                yield state
                ...  # your shutdown
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        nexus = await build_nexus(nexus_or_factory, name="the nexus_lifespan() target")
        task = nexus.start()
        task.add_done_callback(_report_early_death)
        state = getattr(app, "state", None)
        if state is not None:
            setattr(state, state_name, nexus)
        try:
            yield {state_name: nexus}
        finally:
            task.remove_done_callback(_report_early_death)
            nexus.stop()
            await task

    return lifespan


def _report_early_death(task: asyncio.Task[None]) -> None:
    # The loop ended while the app still serves: say so now, not only at shutdown.
    if task.cancelled():
        logger.error("the nexus loop was cancelled while the app is serving; ingest now answers 503")
    elif task.exception() is not None:
        logger.error(
            "the nexus loop failed while the app is serving; ingest now answers 503",
            exc_info=task.exception(),
        )


def get_nexus(connection: HTTPConnection) -> AsyncEventNexus:
    """The nexus :func:`nexus_lifespan` started, from a request (or websocket).

    Usable as a FastAPI dependency: ``nexus: AsyncEventNexus = Depends(get_nexus)``. It looks
    for the default name, ``nexus``; a lifespan given another ``state_name`` is read as
    ``request.state.<state_name>``.

    :raises RuntimeError: the app was not given ``lifespan=nexus_lifespan(...)``.
    """
    for state in (connection.app.state, connection.state):
        nexus = getattr(state, "nexus", None)
        if isinstance(nexus, AsyncEventNexus):
            return nexus
    raise RuntimeError(
        "no nexus on this app (looked for app.state.nexus and request.state.nexus); "
        "create the app with lifespan=nexus_lifespan(nexus_or_factory)"
    )


def _nexus_of(target: HTTPConnection | AsyncEventNexus) -> AsyncEventNexus:
    return target if isinstance(target, AsyncEventNexus) else get_nexus(target)


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(503, detail=_detail(exc), headers=_RETRY_AFTER)


def _detail(exc: Exception) -> str:
    if isinstance(exc, QueueFull):
        return "the event queue is full; retry later"
    return "the event hub is not accepting events (it is stopping or stopped); retry later"


def ingest_nowait(target: HTTPConnection | AsyncEventNexus, event: Event) -> None:
    """Queue ``event`` now, or fail the request with ``503 Service Unavailable``.

    ``target`` is the request (its app's nexus is used) or a nexus. The 503 carries
    ``Retry-After: 1`` and says whether the queue was full or the nexus stopped.

    :raises starlette.exceptions.HTTPException: 503, when the queue is full or the nexus
        no longer accepts events.
    """
    try:
        _nexus_of(target).ingest_nowait(event)
    except (QueueFull, LoopStopped) as exc:
        raise _unavailable(exc) from exc


async def ingest(
    target: HTTPConnection | AsyncEventNexus, event: Event, *, timeout: float | None = None
) -> None:
    """Queue ``event``, waiting while the queue is full; after ``timeout`` seconds, 503.

    Without ``timeout`` it waits as long as it takes: the request is held until there is
    room, which slows the client down to what the handlers can do.

    :raises starlette.exceptions.HTTPException: 503, when ``timeout`` passed with the
        queue still full, or the nexus no longer accepts events.
    """
    nexus = _nexus_of(target)
    try:
        if timeout is None:
            await nexus.ingest(event)
        else:
            await asyncio.wait_for(nexus.ingest(event), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(
            503, detail=f"the event queue stayed full for {timeout:g}s; retry later", headers=_RETRY_AFTER
        ) from None
    except LoopStopped as exc:
        raise _unavailable(exc) from exc


def unavailable_response(request: Request, exc: Exception) -> Response:
    """Exception handler: a :class:`~async_nexus.errors.QueueFull` or
    :class:`~async_nexus.errors.LoopStopped` becomes a JSON ``503`` with ``Retry-After: 1``.
    """
    return JSONResponse({"detail": _detail(exc)}, status_code=503, headers=_RETRY_AFTER)


#: ``Starlette(exception_handlers=EXCEPTION_HANDLERS)`` (or ``FastAPI(...)``): a full queue or a
#: stopped nexus met by a plain ``nexus.ingest_nowait()`` in a request handler answers 503.
EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Response]] = {
    QueueFull: unavailable_response,
    LoopStopped: unavailable_response,
}
