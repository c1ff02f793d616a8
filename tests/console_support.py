"""What the console's tests share: plain HTTP requests as bytes, and a real Chromium.

The requests are written by hand on a socket, so that the tests can send what no HTTP
library would (garbage, a lying Content-Length, a foreign Host).

The browser is Debian's ``chromium`` driven by Playwright, with no browser download and
the flags a machine without a network needs. Without it the browser tests skip, which
``CI=true`` turns into failures (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 20.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def send_raw(port: int, data: bytes, *, host: str = "127.0.0.1") -> Reply:
    """Send ``data`` as it is and read the whole answer (the console closes after one)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split(" ")[1]), headers, body)


async def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    json_body: Any = None,
) -> Reply:
    """One HTTP/1.1 request to the console on 127.0.0.1:``port``."""
    sent = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        sent.setdefault("Content-Type", "application/json")
    if body is not None:
        sent["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n"
    return await send_raw(port, head.encode("latin-1") + (body or b""))


async def eventually(check: Any, *, what: str, timeout: float = WAIT) -> Any:
    """Await ``check()`` (sync or async) until it returns something true; that value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last seen: {value!r}")
        await asyncio.sleep(0.05)


@dataclass
class Browser:
    """A Chromium page, with what its console and its errors said."""

    page: Any
    messages: list[tuple[str, str]] = field(default_factory=list)

    def errors(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.messages if kind in ("error", "pageerror")]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A page of a fresh headless Chromium; skips (a failure under CI=true) without the browser."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            found = Browser(page)
            page.on("console", lambda message: found.messages.append((message.type, message.text)))
            page.on("pageerror", lambda error: found.messages.append(("pageerror", str(error))))

            def dialog(opened: Any) -> None:
                # Recorded, then dismissed: an XSS that calls alert() is seen, and the page goes on.
                found.messages.append(("dialog", opened.message))
                asyncio.ensure_future(opened.dismiss())

            page.on("dialog", dialog)
            page.set_default_timeout(WAIT * 1000)
            yield found
        finally:
            await browser.close()
