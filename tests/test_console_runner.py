"""``python -m async_nexus run TARGET --console [HOST:]PORT`` as a real subprocess.

The daemon logs the console's address; the test reads it from that line, asks the console
over HTTP, and stops the daemon with SIGTERM: the console goes with it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from console_support import eventually, request
from test_runner import Daemon

from async_nexus.runner import EXIT_OK, EXIT_USAGE

TARGET = "tests.daemons.console_shop:factory"
SERVING = r"serving the console on http://127\.0\.0\.1:(\d+)/"
TOKEN = "runner-test-token-0123456789"


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.kill()


async def launch(daemons: list[Daemon], *args: str, env: dict[str, str] | None = None) -> Daemon:
    daemon = await Daemon.start(*args, env=env)
    daemons.append(daemon)
    return daemon


async def test_the_console_serves_the_daemon_and_stops_with_it(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, TARGET, "--console", "0")
    port = int((await daemon.wait_line(SERVING)).group(1))
    await daemon.wait_line(r"running tests\.daemons\.console_shop:factory")

    async def handled() -> int:
        return int((await request(port, "GET", "/api/stats")).json()["1"]["handled"])

    first = await eventually(handled, what="ticks handled")

    async def grew() -> bool:
        return await handled() > first

    async def dead_letters() -> list[dict[str, object]]:
        return list((await request(port, "GET", "/api/dead-letters")).json())

    await eventually(grew, what="the handled count to grow")
    letters = await eventually(dead_letters, what="a dead letter of a failed tick")
    assert {letter["reason"] for letter in letters} == {"failed"}
    assert {letter["exception"] for letter in letters} == {"RuntimeError"}
    assert all(letter["type"] == "tick" and letter["nexus"] == "1" for letter in letters)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_off_loopback_the_console_needs_a_token(daemons: list[Daemon]) -> None:
    refused = await launch(daemons, TARGET, "--console", "0.0.0.0:0")
    assert await refused.exit_code() == EXIT_USAGE
    assert "without a token" in refused.output() and "ASYNC_NEXUS_CONSOLE_TOKEN" in refused.output()

    # From the environment, so that it is not on the command line for ps to show.
    daemon = await launch(
        daemons,
        TARGET,
        "--console",
        "0.0.0.0:0",
        "--console-readonly",
        env={"ASYNC_NEXUS_CONSOLE_TOKEN": TOKEN},
    )
    port = int(
        (await daemon.wait_line(r"serving the console on http://0\.0\.0\.0:(\d+)/ \(with a token")).group(1)
    )
    assert (await request(port, "GET", "/api/stats")).status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await request(port, "GET", "/api/stats", headers=bearer)).status == 200
    csrf = (await request(port, "GET", "/api/csrf", headers=bearer)).json()
    assert csrf["readonly"] is True
    posted = await request(
        port,
        "POST",
        "/api/dead-letters/delete",
        headers={**bearer, "X-CSRF-Token": csrf["csrf"]},
        json_body={"all": True},
    )
    assert posted.status == 403
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


async def test_console_options_without_the_console_are_a_usage_error(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, TARGET, "--console-token", TOKEN)
    assert await daemon.exit_code() == EXIT_USAGE
    assert "go with --console" in daemon.output()
    bad = await launch(daemons, TARGET, "--console", "host:notaport")
    assert await bad.exit_code() == EXIT_USAGE
    assert "port number" in bad.output()
