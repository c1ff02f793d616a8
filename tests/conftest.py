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
