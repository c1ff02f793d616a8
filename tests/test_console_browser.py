"""The console in a real browser: Debian's Chromium, driven by Playwright.

Each test runs a real nexus and its console in the test's loop and opens the page in a
fresh headless Chromium (tests/console_support.py). What is asserted is what a person
would see or do: numbers that move, a dead letter that appears, buttons that replay and
delete, a payload that stays text, a page that asks for its token, a form on another site
that changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from console_support import Browser, chromium, eventually

from async_nexus import AsyncEventNexus, Event
from async_nexus.console import ConsoleServer, serve_console

TOKEN = "browser-test-token-0123456789"


class Shop:
    """A nexus with an ``ok`` handler and an ``order`` handler that fails until fixed."""

    def __init__(self) -> None:
        self.nexus = AsyncEventNexus()
        self.nexus.on_error(lambda exc, subject: None)  # the dead letters say it; no log noise
        self.broken = True
        self.orders: list[tuple[int, dict[str, str]]] = []
        self.nexus.add_handler("ok", self.ok)
        self.nexus.add_handler("order", self.order)

    def ok(self, event: Event, queue: Any) -> None:
        pass

    def order(self, event: Event, queue: Any) -> None:
        if self.broken:
            raise ValueError(f"order {event.id} cannot be placed: the warehouse is down")
        self.orders.append((event.id, dict(event.headers or {})))

    async def fail(self, *events: Event) -> None:
        """Ingest ``events`` and wait until each is a dead letter."""
        for event in events:
            await self.nexus.ingest(event)
        await self.nexus.join()
        assert len(await self.nexus.dead_letters()) >= len(events)


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    shop = Shop()
    async with shop.nexus:
        yield shop


@contextlib.asynccontextmanager
async def console_page(
    nexus: AsyncEventNexus, **options: Any
) -> AsyncIterator[tuple[ConsoleServer, Browser]]:
    server = await serve_console(nexus, port=0, **options)
    try:
        async with chromium() as browser:
            yield server, browser
    finally:
        await server.close()


def letter_row(browser: Browser, event_id: int) -> Any:
    return browser.page.locator(f'#dead-table tr[data-event-id="{event_id}"]')


async def text_of(browser: Browser, selector: str) -> str:
    return str(await browser.page.locator(selector).inner_text())


async def test_the_page_loads_without_errors_and_its_numbers_and_chart_move(shop: Shop) -> None:
    async def flow() -> None:
        number = 0
        while True:
            number += 1
            await shop.nexus.ingest(Event(number, "ok"))
            await asyncio.sleep(0.01)

    feeder = asyncio.create_task(flow())
    try:
        async with console_page(shop.nexus) as (server, browser):
            await browser.page.goto(server.url)
            handled = '[data-nexus="1"] [data-stat="handled"]'
            first = await eventually(
                lambda: _number(text_of(browser, handled)), what="a handled count on the page"
            )
            # The page updates itself: a later reading is higher, without a reload.
            await eventually(
                lambda: _more_than(text_of(browser, handled), first), what="the handled count to grow"
            )
            legend = browser.page.locator('[data-nexus="1"] .legend [data-type="ok"]')
            await eventually(
                lambda: _rate_shown(legend), what="a handled rate above zero in the chart's legend"
            )
            assert await _canvas_has_ink(browser), "the chart drew nothing"
            assert await text_of(browser, '[data-nexus="1"] .state') == "LOOPING"
            registrations = await text_of(browser, '[data-nexus="1"] .tables')
            assert (
                "Shop.ok" in registrations and "Shop.order" in registrations and "ingest()" in registrations
            )
            assert "No dead letters." in await text_of(browser, "#dead-letters")
            assert browser.errors() == []
    finally:
        feeder.cancel()


async def _number(text: Any) -> int | None:
    value = (await text).strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


async def _more_than(text: Any, before: int) -> bool:
    value = (await text).strip()
    return value.isdigit() and int(value) > before


async def _rate_shown(legend: Any) -> bool:
    if not await legend.count():
        return False
    return "0.00/s handled" not in await legend.inner_text()


async def _canvas_has_ink(browser: Browser) -> bool:
    inked = await browser.page.evaluate(
        """() => {
        const canvas = document.querySelector('canvas[data-chart="1"]');
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
        return inked;
    }"""
    )
    return int(inked) > 100


async def test_a_failing_event_shows_as_a_dead_letter_and_replay_handles_it_once_fixed(shop: Shop) -> None:
    async with console_page(shop.nexus) as (server, browser):
        await browser.page.goto(server.url)
        await shop.fail(Event(42, "order", payload={"sku": "tea", "count": 3}))
        row = letter_row(browser, 42)
        await row.wait_for()
        cells = await row.locator("td").all_inner_texts()
        assert cells[:4] == ["1", "42", "order", "failed"]
        assert cells[4] == "ValueError: order 42 cannot be placed: the warehouse is down"
        assert cells[5] == "1"  # attempts
        assert cells[7] == '{"sku": "tea", "count": 3}'
        shop.broken = False  # the cause is fixed
        await row.locator("button.replay").click()
        await row.wait_for(state="detached")
        await eventually(lambda: shop.orders, what="the replayed order to be handled")
        assert shop.orders == [(42, {"replayed": "1"})]
        assert await shop.nexus.dead_letters() == []
        assert "1 replayed" in await text_of(browser, "#action-result")
        assert browser.errors() == []


async def test_delete_removes_one_dead_letter_and_replay_all_sends_the_rest_back(shop: Shop) -> None:
    async with console_page(shop.nexus) as (server, browser):
        await shop.fail(*(Event(number, "order") for number in (1, 2, 3)))
        await browser.page.goto(server.url)
        await letter_row(browser, 3).wait_for()
        await letter_row(browser, 2).locator("button.delete").click()
        await letter_row(browser, 2).wait_for(state="detached")
        kept = sorted(letter.event.id for letter in await shop.nexus.dead_letters())
        assert kept == [1, 3]
        shop.broken = False
        await browser.page.locator("#replay-all").click()
        await browser.page.locator("#dead-empty").wait_for(state="visible")
        await eventually(lambda: len(shop.orders) == 2, what="both replayed orders handled")
        assert sorted(number for number, _ in shop.orders) == [1, 3]
        assert browser.errors() == []


XSS = [
    "<script>window.__xss = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">",
    '"><svg onload="window.__xss = \'svg\'">',
]


async def test_payloads_and_types_that_are_markup_are_shown_as_text_and_run_nothing(shop: Shop) -> None:
    async with console_page(shop.nexus) as (server, browser):
        await browser.page.goto(server.url)
        await shop.fail(*(Event(100 + number, "order", payload=text) for number, text in enumerate(XSS)))
        # A type no handler takes becomes a dead letter too, and a line of the chart.
        await shop.fail(Event(200, "<img src=x onerror=\"window.__xss = 'type'\">", payload={"k": XSS[0]}))
        for number in range(len(XSS)):
            await letter_row(browser, 100 + number).wait_for()
        await letter_row(browser, 200).wait_for()
        await browser.page.locator(".legend [data-type^='<img']").wait_for()
        shown = await text_of(browser, "#dead-table")
        for text in XSS:
            assert text in shown.replace("\\", "")  # there, as the characters it is made of
        assert await browser.page.evaluate("() => window.__xss") is None
        assert await browser.page.locator("#dead-letters img, #dead-letters svg, main img").count() == 0
        assert [kind for kind, _ in browser.messages if kind == "dialog"] == []
        assert browser.errors() == []


async def test_readonly_shows_the_dead_letters_without_buttons(shop: Shop) -> None:
    await shop.fail(Event(5, "order"))
    async with console_page(shop.nexus, readonly=True) as (server, browser):
        await browser.page.goto(server.url)
        await letter_row(browser, 5).wait_for()
        assert await browser.page.locator("#dead-letters button:visible").count() == 0
        # Even the page's own script, with the CSRF token, cannot change anything.
        status = await browser.page.evaluate(
            """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const response = await fetch("/api/dead-letters/delete", {method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify({all: true})});
            return response.status;
        }"""
        )
        assert status == 403
        assert len(await shop.nexus.dead_letters()) == 1


async def test_with_a_token_the_page_asks_for_it_and_a_form_on_another_site_changes_nothing(
    shop: Shop,
) -> None:
    await shop.fail(Event(7, "order"))
    async with console_page(shop.nexus, token=TOKEN) as (server, browser):
        refused = await browser.page.goto(server.url)
        assert refused is not None and refused.status == 401
        assert "needs its token" in await browser.page.inner_text("body")
        await browser.page.goto(f"{server.url}?token={TOKEN}")
        assert browser.page.url == server.url  # the token is gone from the address bar
        await letter_row(browser, 7).wait_for()
        assert not await browser.page.locator("#status.down").count()

        # Another site the same browser visits posts a form at the console: the browser
        # sends the session cookie along, but not the CSRF token, so nothing changes.
        async with _site(_attack_page(server.port)) as evil:
            answer = await browser.page.goto(evil)
            assert answer is not None
            await browser.page.wait_for_url(f"{server.url}api/dead-letters/delete")
            assert "CSRF" in await browser.page.inner_text("body")
        assert [letter.event.id for letter in await shop.nexus.dead_letters()] == [7]


def _attack_page(port: int) -> Callable[[], bytes]:
    form = (
        "<!doctype html><form method=POST enctype=text/plain "
        f'action="http://127.0.0.1:{port}/api/dead-letters/delete">'
        '<input name=\'{"all": true, "x": "\' value=\'"}\'></form>'
        "<script>document.forms[0].submit()</script>"
    ).encode()
    return lambda: form


@contextlib.asynccontextmanager
async def _site(page: Callable[[], bytes]) -> AsyncIterator[str]:
    """A one-page web site on another origin (another port of 127.0.0.1)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = page()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


def test_without_chromium_the_browser_tests_fail_under_ci(tmp_path: Any) -> None:
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "CI": "true", "CHROMIUM": str(tmp_path / "no-chromium-here")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_readonly_shows_the_dead_letters_without_buttons",
        ],
        capture_output=True,
        text=True,
        cwd=tests.parent,
        env=env,
        timeout=60,
    )
    assert "1 failed" in done.stdout, done.stdout + done.stderr
    assert "apt-get install chromium" in done.stdout
