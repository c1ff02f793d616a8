"""async_nexus.asgi under a real uvicorn server on a loopback port, driven over HTTP by httpx.

The apps are Starlette's, and FastAPI's in the test that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from async_nexus import AsyncEventNexus, Event, NexusState
from async_nexus.asgi import EXCEPTION_HANDLERS, get_nexus, ingest, ingest_nowait, nexus_lifespan
from async_nexus.testing import Recorder

WAIT = 10.0  # upper bound for waits that succeed; they finish far sooner


async def accept_nowait(request: Request) -> JSONResponse:
    number = int(request.path_params["number"])
    ingest_nowait(request, Event(number, "order"))
    return JSONResponse({"accepted": number}, status_code=202)


async def accept_waiting(request: Request) -> JSONResponse:
    number = int(request.path_params["number"])
    timeout = float(request.query_params.get("timeout", "0")) or None
    await ingest(request, Event(number, "order"), timeout=timeout)
    return JSONResponse({"accepted": number}, status_code=202)


async def accept_plain(request: Request) -> JSONResponse:
    # A plain nexus call: EXCEPTION_HANDLERS turns QueueFull into the 503.
    number = int(request.path_params["number"])
    get_nexus(request).ingest_nowait(Event(number, "order"))
    return JSONResponse({"accepted": number}, status_code=202)


ROUTES = [
    Route("/nowait/{number}", accept_nowait, methods=["POST"]),
    Route("/wait/{number}", accept_waiting, methods=["POST"]),
    Route("/plain/{number}", accept_plain, methods=["POST"]),
]


class SlowOrders:
    """An async handler that blocks on a gate the test opens."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.recorder = Recorder(self.handle, name="orders")

    async def handle(self, event: Event, queue: Any) -> None:
        self.entered.set()
        await self.gate.wait()


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under uvicorn on a free loopback port in this loop; yield a client for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn takes the socket: a request sent now waits in the backlog
    # until the server (after the lifespan's startup) accepts it; no polling for "started".
    sock.listen(16)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=WAIT)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


async def test_the_response_goes_out_before_the_handler_runs_and_shutdown_drains() -> None:
    orders = SlowOrders()
    nexus = AsyncEventNexus()
    nexus.add_handler("order", orders.recorder)
    app = Starlette(routes=ROUTES, lifespan=nexus_lifespan(nexus))
    async with serving(app) as client:
        response = await client.post("/wait/1")
        assert response.status_code == 202 and response.json() == {"accepted": 1}
        assert app.state.nexus is nexus and nexus.state is NexusState.LOOPING
        # The response is here while the handler is still blocked on the gate.
        await asyncio.wait_for(orders.entered.wait(), WAIT)
        assert orders.recorder.events == []
        response = await client.post("/nowait/2")
        assert response.status_code == 202
        orders.gate.set()
        await orders.recorder.wait_for(1, timeout=WAIT)
    # Shutdown stopped the nexus gracefully: the second event was handled too.
    assert [event.id for event in orders.recorder.events] == [1, 2]
    assert nexus.state is NexusState.STOPPED


async def test_a_fastapi_app_owns_the_nexus_through_its_lifespan() -> None:
    orders = SlowOrders()

    def build() -> AsyncEventNexus:
        nexus = AsyncEventNexus(maxsize=1)
        nexus.add_handler("order", orders.recorder)
        return nexus

    app = FastAPI(lifespan=nexus_lifespan(build), exception_handlers=EXCEPTION_HANDLERS)

    @app.post("/orders", status_code=202)
    async def place_order(order: dict[str, int], request: Request) -> dict[str, int]:
        ingest_nowait(request, Event(order["id"], "order", payload=order))
        return {"accepted": order["id"]}

    @app.post("/audit", status_code=202)
    async def audit(entry: dict[str, int], request: Request) -> dict[str, int]:
        await ingest(request, Event(entry["id"], "order", payload=entry), timeout=0.1)
        return {"accepted": entry["id"]}

    @app.get("/queued")
    def queued(nexus: Annotated[AsyncEventNexus, Depends(get_nexus)]) -> dict[str, int]:
        return {"queued": nexus.stats()["queued"]}

    async with serving(app) as client:
        response = await client.post("/orders", json={"id": 1})
        assert response.status_code == 202 and response.json() == {"accepted": 1}
        await asyncio.wait_for(orders.entered.wait(), WAIT)  # event 1 is in the handler
        assert (await client.post("/orders", json={"id": 2})).status_code == 202  # the queue is full
        assert (await client.get("/queued")).json() == {"queued": 1}  # get_nexus as a dependency

        full = await client.post("/orders", json={"id": 3})
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        waited = await client.post("/audit", json={"id": 4})
        assert waited.status_code == 503 and "stayed full for 0.1s" in waited.text
        nexus = app.state.nexus
        orders.gate.set()
    # FastAPI's shutdown ran the lifespan's graceful stop: what was accepted was handled.
    assert [event.payload for event in orders.recorder.events] == [{"id": 1}, {"id": 2}]
    assert isinstance(nexus, AsyncEventNexus) and nexus.state is NexusState.STOPPED


async def test_a_full_queue_answers_503_and_the_accepted_events_are_still_handled() -> None:
    orders = SlowOrders()
    nexus = AsyncEventNexus(maxsize=1)
    nexus.add_handler("order", orders.recorder)
    app = Starlette(routes=ROUTES, lifespan=nexus_lifespan(nexus), exception_handlers=EXCEPTION_HANDLERS)
    async with serving(app) as client:
        assert (await client.post("/nowait/1")).status_code == 202
        await asyncio.wait_for(orders.entered.wait(), WAIT)  # event 1 is in the handler
        assert (await client.post("/nowait/2")).status_code == 202  # event 2 fills the queue

        full = await client.post("/nowait/3")
        assert full.status_code == 503
        assert full.headers["retry-after"] == "1"
        assert "event queue is full" in full.text

        plain = await client.post("/plain/4")  # QueueFull from a plain ingest_nowait()
        assert plain.status_code == 503
        assert plain.json() == {"detail": "the event queue is full; retry later"}

        waited = await client.post("/wait/5", params={"timeout": "0.1"})
        assert waited.status_code == 503
        assert "stayed full for 0.1s" in waited.text

        orders.gate.set()
        await orders.recorder.wait_for(2, timeout=WAIT)
        assert (await client.post("/nowait/6")).status_code == 202
        await orders.recorder.wait_for(3, timeout=WAIT)
    assert [event.id for event in orders.recorder.events] == [1, 2, 6]


async def test_an_async_factory_builds_the_nexus_inside_the_server_loop() -> None:
    recorder = Recorder()
    loops: list[asyncio.AbstractEventLoop] = []

    async def build() -> AsyncEventNexus:
        loops.append(asyncio.get_running_loop())
        nexus = AsyncEventNexus()
        nexus.add_handler("order", recorder)
        return nexus

    app = Starlette(routes=ROUTES, lifespan=nexus_lifespan(build))
    async with serving(app) as client:
        assert (await client.post("/nowait/9")).status_code == 202
        assert loops == [asyncio.get_running_loop()]
        assert [event.id for event in await recorder.wait_for(1, timeout=WAIT)] == [9]
        nexus = app.state.nexus
    assert isinstance(nexus, AsyncEventNexus) and nexus.state is NexusState.STOPPED


async def test_a_stopped_nexus_answers_503() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler("order", Recorder())
    app = Starlette(routes=ROUTES, lifespan=nexus_lifespan(nexus), exception_handlers=EXCEPTION_HANDLERS)
    async with serving(app) as client:
        assert (await client.post("/nowait/0")).status_code == 202
        nexus.stop()
        for path in ("/nowait/1", "/wait/1", "/plain/1"):
            response = await client.post(path)
            assert response.status_code == 503, path
            assert "not accepting events" in response.text, path


def test_get_nexus_without_the_lifespan_says_how_to_set_it_up() -> None:
    app = Starlette(routes=ROUTES)
    request = Request({"type": "http", "app": app, "method": "POST", "path": "/", "headers": []})
    with pytest.raises(RuntimeError, match=r"lifespan=nexus_lifespan\(nexus_or_factory\)"):
        get_nexus(request)
