"""A live console for a running daemon: one page in a browser, and the JSON under it.

:func:`serve_console` serves, from the running event loop, a page that lists each nexus it
is given: its state and counts, a chart of the events per second handled and failed per
type over the last five minutes (updated every second), its registrations and sources,
the journal's size, the longest loop stall, and the dead letters with buttons to replay or
delete them. The daemon runner starts one with ``--console [HOST:]PORT``.

Everything is served by the console itself (no CDN, no file from elsewhere: it works
offline), on the standard library alone: a small HTTP/1.1 server on
:func:`asyncio.start_server`.

The JSON API:

``GET /api/stats``
    ``{name: nexus.stats()}`` for each nexus.
``GET /api/rates``
    the chart's samples: per nexus, ``times`` and a ``handled`` and ``failed`` line per type.
``GET /api/dead-letters``
    the dead letters, newest first, as objects with ``id``, ``nexus``, ``event_id``, ``type``,
    ``priority``, ``headers``, ``payload`` (a readable preview, cut past 300 characters),
    ``reason``, ``exception``, ``message``, ``attempts``, ``handler`` and ``when``
    (``time.time()``); query parameters ``limit`` (per nexus, default 100), ``type`` and
    ``nexus``.
``POST /api/dead-letters/replay``, ``POST /api/dead-letters/delete``
    a JSON body ``{"ids": [...]}`` or ``{"all": true}``, with ``"nexus": name`` to pick one
    nexus (needed with ``ids`` when the console shows several, as ids are per nexus);
    answer ``{"replayed": n}`` or ``{"deleted": n}``.
``GET /api/csrf``
    ``{"csrf": token, "readonly": bool}``: the CSRF token a ``POST`` sends as ``X-CSRF-Token``.

The security model (see :doc:`/operating`): it listens on ``127.0.0.1`` unless told
otherwise; on any other address it refuses to start without a ``token``, and with one,
every page and call needs it (401 without). A change needs ``POST``, the CSRF token and a
JSON body; ``readonly=True`` refuses every change and shows no buttons. The page puts what
events carry into the document as text only, and its Content-Security-Policy forbids
inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Union

from ..errors import BadCall, BadValue
from ..nexus import AsyncEventNexus
from ._app import SECURITY_HEADERS, ConsoleApp, is_loopback
from ._http import (
    BUSY_READ_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEAD,
    WRITE_TIMEOUT,
    HttpError,
    read_request,
    response,
)
from ._rates import Rates

__all__ = ["ConsoleServer", "serve_console", "MIN_TOKEN_LENGTH"]

logger = logging.getLogger("async_nexus.console")

#: The shortest token accepted: a guessable token is no lock.
MIN_TOKEN_LENGTH = 16

#: What :func:`serve_console` shows: one nexus, several (named ``"1"``, ``"2"``, … by
#: position), or several by name.
Nexuses = Union[AsyncEventNexus, Sequence[AsyncEventNexus], Mapping[str, AsyncEventNexus]]


class ConsoleServer:
    """A console being served: :func:`serve_console` makes and starts it; :meth:`close` stops it."""

    def __init__(self, app: ConsoleApp, rates: Rates) -> None:
        self._app = app
        self._rates = rates
        self._server: asyncio.Server | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)
        self._rates.sample()  # the first sample: the next one shows the rates since now
        self._sampler = asyncio.create_task(self._sample(), name="async_nexus console rates")

    async def _sample(self) -> None:
        await asyncio.sleep(self._rates.interval)
        await self._rates.run()

    @property
    def _listening(self) -> asyncio.Server:
        if self._server is None:
            raise BadCall("this console was not started: serve_console() makes and starts one")
        return self._server

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._listening.sockets[0].getsockname()[0])

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when port ``0`` was asked for)."""
        return int(self._listening.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port/``, the page's address (without the token)."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def connections(self) -> int:
        """How many connections it is serving now; past 64, new ones are answered 503 at once."""
        return len(self._connections)

    @property
    def csrf_token(self) -> str:
        """The token a ``POST`` sends in its ``X-CSRF-Token`` header; new for each console."""
        return self._app.csrf

    async def close(self) -> None:
        """Stop listening, end the requests being answered, stop sampling; wait until done."""
        server, sampler = self._listening, self._sampler
        server.close()
        tasks = [*self._connections, *([] if sampler is None else [sampler])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = len(self._connections) >= MAX_CONNECTIONS
        self._connections.add(task)
        try:
            if busy:
                # What came at once is read, not waited for: closing on unread bytes would
                # reset the connection before the client reads why.
                with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.read(MAX_HEAD), BUSY_READ_TIMEOUT)
                await self._send(writer, *_answer_busy())
            else:
                await self._exchange(reader, writer)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, path = "GET", "/"
        try:
            request = await read_request(reader)
            method, path = request.method, request.path
            status, body, content_type, headers = await self._app.answer(request)
        except HttpError as exc:
            status, headers = exc.status, exc.headers
            if path.startswith("/api/"):
                body, content_type = json.dumps({"error": exc.message}).encode(), "application/json"
            else:
                body, content_type = f"{exc.message}\n".encode(), "text/plain; charset=utf-8"
        except Exception:
            # A fault of the console or of what it called: said in the log, answered with a
            # 500, and the daemon goes on.
            logger.exception("the console failed to answer %s %s", method, path[:200])
            status, headers = 500, {}
            body, content_type = (
                b'{"error": "the console failed; the daemon\'s log says why"}',
                "application/json",
            )
        if method == "HEAD":
            body = b""
        await self._send(writer, status, body, content_type, headers)

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        # A client that does not take its answer is let go, as one that does not send.
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            writer.write(response(status, body, content_type, {**SECURITY_HEADERS, **headers}))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


def _answer_busy() -> tuple[int, bytes, str, dict[str, str]]:
    message = (
        f"the console serves {MAX_CONNECTIONS} connections at once and has that many open; "
        "try again in a moment"
    )
    return 503, json.dumps({"error": message}).encode(), "application/json", {"Retry-After": "1"}


def _named(nexuses: Nexuses) -> dict[str, AsyncEventNexus]:
    if isinstance(nexuses, AsyncEventNexus):
        return {"1": nexuses}
    if isinstance(nexuses, Mapping):
        named = {str(name): nexus for name, nexus in nexuses.items()}
    elif isinstance(nexuses, Sequence) and not isinstance(nexuses, (str, bytes)):
        named = {str(position): nexus for position, nexus in enumerate(nexuses, 1)}
    else:
        raise BadValue(
            f"serve_console() shows a nexus, a list of nexuses or a dict of names to nexuses, not {nexuses!r}"
        )
    wrong = [name for name, nexus in named.items() if not isinstance(nexus, AsyncEventNexus)]
    if wrong or not named:
        raise BadValue(
            f"serve_console() needs at least one AsyncEventNexus, and every one must be one; got {nexuses!r}"
        )
    return named


async def serve_console(
    nexuses: Nexuses,
    *,
    port: int,
    host: str = "127.0.0.1",
    token: str | None = None,
    readonly: bool = False,
) -> ConsoleServer:
    """Serve the console of ``nexuses`` at ``http://host:port/`` from the running loop.

    ``nexuses`` is a nexus, a list of them (named ``"1"``, ``"2"``, … on the page) or a dict
    of names to nexuses. Port ``0`` picks a free port: read it from
    :attr:`ConsoleServer.port`. Call :meth:`ConsoleServer.close` when the nexuses have
    stopped (the daemon runner does).

    :param host: where to listen; ``127.0.0.1`` (this machine only) by default.
    :param token: a secret of at least :data:`MIN_TOKEN_LENGTH` characters; every request
        must then carry it (a browser opens ``/?token=TOKEN`` once). Required on any address
        that is not a loopback one.
    :param readonly: show the page without its buttons and refuse every change.
    :raises BadValue: a non-loopback ``host`` without ``token``, a token too short, or
        ``nexuses`` not nexuses.
    :raises OSError: the address cannot be listened on (in use, say).

    >>> import asyncio
    >>> from async_nexus import AsyncEventNexus
    >>> from async_nexus.console import serve_console
    >>> async def main():
    ...     nexus = AsyncEventNexus()
    ...     console = await serve_console(nexus, port=0)
    ...     print(console.url.startswith("http://127.0.0.1:"))
    ...     await console.close()
    >>> asyncio.run(main())
    True
    """
    named = _named(nexuses)
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH):
        raise BadValue(
            f"the console's token must be a string of at least {MIN_TOKEN_LENGTH} characters; make one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    if token is None and not is_loopback(host):
        raise BadValue(
            f"the console would listen on {host!r}, which other machines may reach, without a token; "
            "give it a token (token=..., --console-token or ASYNC_NEXUS_CONSOLE_TOKEN), or listen "
            "on 127.0.0.1"
        )
    rates = Rates(named)
    console = ConsoleServer(ConsoleApp(named, rates, token=token, readonly=readonly), rates)
    await console._start(host, port)
    return console
