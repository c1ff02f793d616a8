"""Shared pytest configuration for the Async Nexus test suite.

Under ``CI=true`` (which ``.ci/run`` sets) no test may skip: a skip there means something
the suite needs is missing, so it is turned into a failure that says what.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from nats_server import NatsServer, require_nats_server
from redis_server import RedisServer


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    return report


# -- Redis: the server of .ci/run, a fresh stream, a client -------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The shared server of .ci/run (REDIS_URL), or one of our own."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def stream() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.from_url(redis_url)
    yield connection
    await connection.aclose()


# -- NATS: one JetStream server per build (Debian's and the current release) ---------------


@pytest.fixture(scope="session", params=["debian", "release"])
def nats_binary(request: pytest.FixtureRequest) -> str:
    """The nats-server binary of each build; every NATS test runs against both."""
    return require_nats_server(request.param)


@pytest.fixture(scope="session")
def nats_url(nats_binary: str) -> Iterator[str]:
    """A JetStream server shared by the tests that do not stop it."""
    server = NatsServer(nats_binary).start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def nats_server(nats_binary: str) -> Iterator[NatsServer]:
    """A JetStream server of the test's own, to stop and restart."""
    server = NatsServer(nats_binary).start()
    try:
        yield server
    finally:
        server.close()
