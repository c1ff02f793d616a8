"""The console's server over plain HTTP: what it serves, and what it refuses.

A real nexus and a real console on a free port; the requests are bytes on a socket
(tests/console_support.py), so the refusals are seen as a client without a browser sees
them. The browser's side is tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from console_support import Reply, eventually, request, send_raw

from async_nexus import AsyncEventNexus, Event
from async_nexus.console import ConsoleServer, serve_console
from async_nexus.errors import BadValue

TOKEN = "a-test-token-long-enough"


def running_nexus() -> AsyncEventNexus:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)
    nexus.add_handler("ok", lambda e, q: None)
    return nexus


@pytest.fixture
async def nexus() -> AsyncIterator[AsyncEventNexus]:
    nexus = running_nexus()
    async with nexus:
        yield nexus


@pytest.fixture
async def console(nexus: AsyncEventNexus) -> AsyncIterator[ConsoleServer]:
    server = await serve_console(nexus, port=0)
    yield server
    await server.close()


@pytest.fixture
async def guarded(nexus: AsyncEventNexus) -> AsyncIterator[ConsoleServer]:
    server = await serve_console(nexus, port=0, token=TOKEN)
    yield server
    await server.close()


def change(console: ConsoleServer, body: Any = None, **headers: str) -> dict[str, Any]:
    """A POST the page would send: the CSRF token, a JSON body."""
    return {
        "headers": {"X-CSRF-Token": console.csrf_token, **headers},
        "json_body": {"all": True} if body is None else body,
    }


# -- what it serves -------------------------------------------------------------------------


async def test_the_page_and_its_own_script_and_style_are_served_with_security_headers(
    console: ConsoleServer,
) -> None:
    page = await request(console.port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    text = page.body.decode()
    # Only its own script, by address: nothing inline, nothing from elsewhere.
    assert re.findall(r"<script[^>]*>", text) == ['<script src="/console.js" defer>']
    assert "http://" not in text and "https://" not in text
    assert f'content="{console.csrf_token}"' in text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    script = await request(console.port, "GET", "/console.js")
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert b"innerHTML" not in script.body and b"eval(" not in script.body
    style = await request(console.port, "GET", "/console.css")
    assert style.status == 200 and style.headers["content-type"].startswith("text/css")
    head = await request(console.port, "HEAD", "/")
    assert head.status == 200 and head.body == b""


async def test_api_stats_and_rates_follow_the_events(nexus: AsyncEventNexus, console: ConsoleServer) -> None:
    for i in range(5):
        await nexus.ingest(Event(i, "ok"))
    await nexus.join()
    stats = (await request(console.port, "GET", "/api/stats")).json()
    assert list(stats) == ["1"]
    assert stats["1"]["handled"] == 5 and stats["1"]["state"] == "LOOPING"
    assert stats["1"]["registrations"][0]["type"] == "ok"

    async def handled_per_second() -> float:
        rates = (await request(console.port, "GET", "/api/rates")).json()["1"]
        return sum(rates["types"].get("ok", {}).get("handled", []))

    for i in range(5, 10):
        await nexus.ingest(Event(i, "ok"))
    # The sampler runs each second: the five later events (at least) show as a rate.
    assert await eventually(handled_per_second, what="a handled rate of type ok") >= 5


async def test_several_nexuses_by_name() -> None:
    first, second = running_nexus(), running_nexus()
    async with first, second:
        await second.ingest(Event(1, "ok"))
        await second.join()
        server = await serve_console({"orders": first, "mail": second}, port=0)
        try:
            stats = (await request(server.port, "GET", "/api/stats")).json()
        finally:
            await server.close()
    assert list(stats) == ["orders", "mail"]
    assert stats["mail"]["handled"] == 1 and stats["orders"]["handled"] == 0


# -- the token ------------------------------------------------------------------------------


async def test_with_a_token_every_page_and_call_needs_it(guarded: ConsoleServer) -> None:
    for path in ("/", "/console.js", "/api/stats", "/api/rates", "/api/dead-letters", "/api/csrf"):
        refused = await request(guarded.port, "GET", path)
        assert refused.status == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert b"token" in refused.body
    wrong = await request(guarded.port, "GET", "/api/stats", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    posted = await request(guarded.port, "POST", "/api/dead-letters/delete", **change(guarded))
    assert posted.status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    allowed = await request(guarded.port, "GET", "/api/stats", headers=bearer)
    assert allowed.status == 200 and "1" in allowed.json()
    # The token says who asks; a change still needs the CSRF token as well.
    no_csrf = await request(
        guarded.port, "POST", "/api/dead-letters/delete", headers=bearer, json_body={"all": True}
    )
    assert no_csrf.status == 403 and "CSRF" in no_csrf.json()["error"]
    done = await request(
        guarded.port, "POST", "/api/dead-letters/delete", **change(guarded, Authorization=f"Bearer {TOKEN}")
    )
    assert done.status == 200 and done.json() == {"deleted": 0}


async def test_a_browser_logs_in_once_and_keeps_a_cookie_that_is_not_the_token(
    guarded: ConsoleServer,
) -> None:
    wrong = await request(guarded.port, "GET", "/?token=not-the-token")
    assert wrong.status == 401 and "set-cookie" not in wrong.headers
    assert b"--console-token" in wrong.body  # says which token is meant
    login = await request(guarded.port, "GET", f"/?token={TOKEN}")
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    session = cookie.split(";")[0]
    page = await request(guarded.port, "GET", "/", headers={"Cookie": session})
    assert page.status == 200
    forged = await request(guarded.port, "GET", "/", headers={"Cookie": session[:-4] + "0000"})
    assert forged.status == 401


async def test_a_console_off_loopback_refuses_to_start_without_a_token(nexus: AsyncEventNexus) -> None:
    with pytest.raises(BadValue, match="without a token.*127.0.0.1"):
        await serve_console(nexus, host="0.0.0.0", port=0)
    with pytest.raises(BadValue, match="at least 16 characters"):
        await serve_console(nexus, port=0, token="short")
    server = await serve_console(nexus, host="0.0.0.0", port=0, token=TOKEN)
    try:
        refused = await request(server.port, "GET", "/api/stats")
        assert refused.status == 401
    finally:
        await server.close()


async def test_without_a_token_only_loopback_names_are_answered(console: ConsoleServer) -> None:
    # A page whose name was pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host.
    foreign = await request(
        console.port, "GET", "/api/stats", headers={"Host": f"evil.example:{console.port}"}
    )
    assert foreign.status == 421 and b"loopback" in foreign.body
    for host in ("localhost", "127.0.0.1", "[::1]"):
        allowed = await request(console.port, "GET", "/api/stats", headers={"Host": f"{host}:{console.port}"})
        assert allowed.status == 200, host


# -- changes: POST, CSRF, readonly ----------------------------------------------------------


async def test_a_change_needs_post_the_csrf_token_json_and_no_foreign_origin(console: ConsoleServer) -> None:
    port = console.port
    # A GET changes nothing: it is refused as a GET.
    got = await request(port, "GET", "/api/dead-letters/replay?all=true")
    assert got.status == 405 and got.headers["allow"] == "POST"
    no_token = await request(port, "POST", "/api/dead-letters/replay", json_body={"all": True})
    assert no_token.status == 403 and "CSRF" in no_token.json()["error"]
    wrong = await request(
        port, "POST", "/api/dead-letters/replay", headers={"X-CSRF-Token": "guess"}, json_body={"all": True}
    )
    assert wrong.status == 403
    # What a cross-site form can send: a urlencoded body, no header of its own.
    form = await request(
        port,
        "POST",
        "/api/dead-letters/delete",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
        body=b"all=true",
    )
    assert form.status == 403
    foreign = await request(
        port, "POST", "/api/dead-letters/delete", **change(console, Origin="http://evil.example")
    )
    assert foreign.status == 403 and "origin" in foreign.json()["error"]
    not_json = await request(
        port,
        "POST",
        "/api/dead-letters/delete",
        headers={"X-CSRF-Token": console.csrf_token, "Content-Type": "text/plain"},
        body=b'{"all": true}',
    )
    assert not_json.status == 415
    reads_only = await request(port, "POST", "/api/stats", **change(console))
    assert reads_only.status == 405 and reads_only.headers["allow"] == "GET"


async def test_readonly_refuses_every_change(nexus: AsyncEventNexus) -> None:
    server = await serve_console(nexus, port=0, readonly=True)
    try:
        for action in ("replay", "delete"):
            refused = await request(server.port, "POST", f"/api/dead-letters/{action}", **change(server))
            assert refused.status == 403 and "read-only" in refused.json()["error"]
        page = await request(server.port, "GET", "/")
        assert b'name="console-readonly" content="true"' in page.body
        csrf = (await request(server.port, "GET", "/api/csrf")).json()
        assert csrf == {"csrf": server.csrf_token, "readonly": True}
    finally:
        await server.close()


# -- bad requests: a clear 4xx, and the console goes on ---------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"garbage\r\n\r\n", 400, b"request line"),
        (b"\xff\xfe\r\n\r\n", 400, b"ASCII"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, b"header line"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431, b"bytes"),
        (b"POST /api/dead-letters/replay HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 411, b"Content-Length"),
        (
            b"POST /api/dead-letters/replay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
            413,
            b"at most",
        ),
        (
            b"POST /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
            b"Content-Length",
        ),
        (b"DELETE /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, b"GET or POST"),
        (b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, b"nothing at"),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_the_console_goes_on(
    console: ConsoleServer, data: bytes, status: int, says: bytes
) -> None:
    reply = await send_raw(console.port, data)
    assert reply.status == status
    assert says in reply.body
    assert (await request(console.port, "GET", "/api/stats")).status == 200


async def test_bad_json_and_bad_bodies_say_what_to_send(console: ConsoleServer) -> None:
    port = console.port
    headers = {"X-CSRF-Token": console.csrf_token, "Content-Type": "application/json"}
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "not JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"all": true, "ids": [1]}', "either"),
        (b"{}", "either"),
        (b'{"ids": ["one"]}', "whole numbers"),
        (b'{"all": "yes"}', "true or false"),
        (b'{"all": true, "nexus": "nope"}', "no nexus named"),
        (b'{"all": true, "drop": 1}', "unknown keys"),
    ]
    for body, says in cases:
        reply: Reply = await request(port, "POST", "/api/dead-letters/delete", headers=headers, body=body)
        assert reply.status == 400, body[:40]
        assert says in reply.json()["error"], (body[:40], reply.body)
    bad_limit = await request(port, "GET", "/api/dead-letters?limit=lots")
    assert bad_limit.status == 400 and "limit" in bad_limit.json()["error"]


async def test_a_client_that_sends_half_a_request_and_goes_away_leaves_the_console_serving(
    console: ConsoleServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    writer.write(b"POST /api/dead-letters/delete HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    await writer.drain()
    writer.close()
    assert (await request(console.port, "GET", "/api/stats")).status == 200


async def test_close_stops_listening(nexus: AsyncEventNexus) -> None:
    server = await serve_console(nexus, port=0)
    port = server.port
    await server.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_change_from_the_console_own_page_is_done(
    nexus: AsyncEventNexus, console: ConsoleServer
) -> None:
    await nexus.ingest(Event(1, "nobody.handles.this"))
    await nexus.join()
    assert len(await nexus.dead_letters()) == 1
    # The page's origin, plain or (behind a proxy that adds TLS) https: the same host.
    for scheme in ("http", "https"):
        origin = f"{scheme}://127.0.0.1:{console.port}"
        done = await request(
            console.port, "POST", "/api/dead-letters/delete", **change(console, Origin=origin)
        )
        assert done.status == 200, done.body
    assert done.json() == {"deleted": 0}  # the first one deleted it
    assert await nexus.dead_letters() == []


async def test_a_token_in_the_address_of_a_console_without_one_is_ignored(console: ConsoleServer) -> None:
    page = await request(console.port, "GET", "/?token=whatever")
    assert page.status == 200 and b"Async Nexus console" in page.body
    assert "set-cookie" not in page.headers


async def test_dead_letters_over_the_api_of_several_nexuses() -> None:
    first, second = running_nexus(), running_nexus()
    async with first, second:
        await first.ingest(Event(11, "lost", payload={"big": "x" * 5000}))
        await second.ingest(Event(22, "lost", payload=["small"]))
        await first.join()
        await second.join()
        server = await serve_console({"a": first, "b": second}, port=0)
        try:
            letters = (await request(server.port, "GET", "/api/dead-letters")).json()
            by_event = {letter["event_id"]: letter for letter in letters}
            assert set(by_event) == {11, 22}
            small = by_event[22]
            assert small["nexus"] == "b" and small["type"] == "lost" and small["reason"] == "unhandled"
            assert small["exception"] == "UnhandledEvent" and small["attempts"] >= 1
            assert small["payload"] == '["small"]' and small["when"] > 0
            big = by_event[11]["payload"]
            assert big.startswith('{"big": "xxx') and big.endswith("(4711 more characters)")
            only_b = (await request(server.port, "GET", "/api/dead-letters?nexus=b")).json()
            assert [letter["event_id"] for letter in only_b] == [22]

            ids = {"ids": [small["id"]]}
            unsure = await request(server.port, "POST", "/api/dead-letters/replay", **change(server, ids))
            assert unsure.status == 400 and "say which" in unsure.json()["error"]
            second.add_handler("lost", lambda e, q: None)
            replayed = await request(
                server.port, "POST", "/api/dead-letters/replay", **change(server, {**ids, "nexus": "b"})
            )
            assert replayed.json() == {"replayed": 1}
            await second.join()
            assert await second.dead_letters() == [] and len(await first.dead_letters()) == 1
        finally:
            await server.close()


async def test_a_stopped_nexus_is_answered_with_409_and_the_console_goes_on(tmp_path: Any) -> None:
    journaled, plain = AsyncEventNexus(journal=tmp_path / "events.db"), running_nexus()
    journaled.on_error(lambda exc, subject: None)
    async with journaled, plain:
        await plain.ingest(Event(1, "lost"))
        await plain.join()
    server = await serve_console({"j": journaled, "p": plain}, port=0)
    try:
        # The journal is closed with its nexus: its dead letters cannot be read any more.
        listed = await request(server.port, "GET", "/api/dead-letters?nexus=j")
        assert listed.status == 409 and listed.json()["error"].startswith("nexus j: ")
        # A stopped nexus takes nothing back: its dead letter stays.
        replayed = await request(
            server.port, "POST", "/api/dead-letters/replay", **change(server, {"all": True, "nexus": "p"})
        )
        assert replayed.status == 409 and replayed.json()["error"].startswith("nexus p: ")
        assert len(await plain.dead_letters()) == 1
        stats = await request(server.port, "GET", "/api/stats")
        assert stats.status == 200 and stats.json()["p"]["state"] == "STOPPED"
    finally:
        await server.close()


async def test_connections_beyond_the_limit_are_answered_503_and_the_console_recovers(
    console: ConsoleServer,
) -> None:
    from async_nexus.console._http import MAX_CONNECTIONS

    # Clients that connect and send nothing hold every connection the console serves.
    held = [await asyncio.open_connection("127.0.0.1", console.port) for _ in range(MAX_CONNECTIONS)]
    try:
        await eventually(lambda: console.connections == MAX_CONNECTIONS, what="every connection held")
        busy = await request(console.port, "GET", "/api/stats")
        assert busy.status == 503, busy
        assert busy.headers["retry-after"] == "1"
        assert f"serves {MAX_CONNECTIONS} connections at once" in busy.json()["error"]
        assert console.connections == MAX_CONNECTIONS
    finally:
        for _, writer in held:
            writer.close()
    await eventually(lambda: console.connections == 0, what="the held connections let go")
    assert (await request(console.port, "GET", "/api/stats")).status == 200
