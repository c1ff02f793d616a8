"""async_nexus.metrics: nexus.stats() as Prometheus metrics, read at scrape time, served over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from async_nexus import AsyncEventNexus, Event
from async_nexus.metrics import NexusCollector, register_nexus, register_nexuses, serve_metrics
from async_nexus.testing import Recorder, feed, running

WAIT = 10.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} of an exposition text, parsed by prometheus_client."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(registry).decode())


def build() -> AsyncEventNexus:
    nexus = AsyncEventNexus()
    nexus.add_filter(lambda event, queue: event.payload == "drop")
    nexus.add_handler(1, Recorder())

    def fails(event: Event, queue: Any) -> None:
        raise ValueError("bad")

    nexus.add_handler("bad", fails)
    nexus.on_error(lambda exc, subject: None)
    return nexus


async def test_the_counts_and_the_per_type_counts_are_exported() -> None:
    nexus = build()
    registry = CollectorRegistry()
    register_nexus(nexus, registry)
    async with running(nexus):
        await feed(nexus, [Event(1, 1), Event(2, 1), Event(3, 1, 0, "drop"), Event(4, "bad"), Event(5, 404)])
        got = scrape(registry)
    assert got[("async_nexus_events_ingested_total", ())] == 5
    assert got[("async_nexus_events_dispatched_total", ())] == 5
    assert got[("async_nexus_events_filtered_total", ())] == 1
    assert got[("async_nexus_events_unhandled_total", ())] == 1
    assert got[("async_nexus_events_failed_total", ())] == 1
    assert got[("async_nexus_errors_total", ())] == 2  # the failure and the unhandled event
    assert got[("async_nexus_queue_depth", ())] == 0
    assert got[("async_nexus_queue_high_water", ())] >= 1
    assert got[("async_nexus_uptime_seconds", ())] > 0
    by_type = "async_nexus_events_dispatched_by_type_total"
    assert got[(by_type, (("type", "1"),))] == 3
    assert got[(by_type, (("type", "bad"),))] == 1
    assert got[("async_nexus_events_failed_by_type_total", (("type", "bad"),))] == 1
    assert got[("async_nexus_events_filtered_by_type_total", (("type", "1"),))] == 1
    assert got[("async_nexus_events_unhandled_by_type_total", (("type", "404"),))] == 1
    assert got[("async_nexus_events_ingested_by_source_total", (("source", "ingest()"),))] == 5


async def test_metrics_are_read_when_scraped_not_when_registered() -> None:
    nexus = build()
    registry = CollectorRegistry()
    register_nexus(nexus, registry)
    assert scrape(registry)[("async_nexus_events_dispatched_total", ())] == 0
    async with running(nexus):
        await feed(nexus, [Event(1, 1)])
        assert scrape(registry)[("async_nexus_events_dispatched_total", ())] == 1
        await feed(nexus, [Event(2, 1), Event(3, 1)])
        assert scrape(registry)[("async_nexus_events_dispatched_total", ())] == 3


def test_two_nexuses_in_one_registry_are_told_apart_by_labels() -> None:
    registry = CollectorRegistry()
    first, second = AsyncEventNexus(), AsyncEventNexus()
    register_nexus(first, registry, labels={"nexus": "orders"})
    register_nexus(second, registry, labels={"nexus": "billing"})
    first.ingest_nowait(Event(1, 1))
    got = scrape(registry)
    assert got[("async_nexus_queue_depth", (("nexus", "orders"),))] == 1
    assert got[("async_nexus_queue_depth", (("nexus", "billing"),))] == 0


def test_register_nexuses_exports_each_metric_once_with_a_sample_per_nexus() -> None:
    registry = CollectorRegistry()
    back, front = AsyncEventNexus(), AsyncEventNexus()
    register_nexuses({"back": back, "front": front}, registry)
    front.ingest_nowait(Event(1, "order"))
    text = generate_latest(registry).decode()
    # Two families of one name (what two register_nexus calls give) are not valid exposition.
    assert text.count("# TYPE async_nexus_queue_depth gauge") == 1
    assert text.count("# TYPE async_nexus_events_ingested_by_source_total counter") == 1
    got = samples(text)
    assert got[("async_nexus_queue_depth", (("nexus", "front"),))] == 1
    assert got[("async_nexus_queue_depth", (("nexus", "back"),))] == 0
    by_source = (("nexus", "front"), ("source", "ingest()"))
    assert got[("async_nexus_events_ingested_by_source_total", by_source)] == 1


def test_a_count_added_to_stats_is_exported_as_a_gauge_by_itself() -> None:
    class WithSources(AsyncEventNexus):
        def stats(self) -> dict[str, Any]:
            return {**super().stats(), "open sources": 3, "by_region": {"eu": 2, "us": 1}}

    got = scrape_collector(NexusCollector(WithSources(), namespace="app"))
    assert got[("app_open_sources", ())] == 3
    assert got[("app_by_region", (("key", "eu"),))] == 2
    assert got[("app_events_ingested_total", ())] == 0


def scrape_collector(collector: NexusCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return scrape(registry)


async def test_serve_metrics_answers_over_http_from_the_loop() -> None:
    nexus = build()
    async with running(nexus):
        await feed(nexus, [Event(1, 1), Event(2, 1)])
        server = await serve_metrics(nexus, port=0)
        try:
            assert server.url == f"http://127.0.0.1:{server.port}/metrics"
            async with httpx.AsyncClient(timeout=WAIT) as client:
                text = await client.get(server.url)
                openmetrics = await client.get(
                    server.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
                )
                head = await client.head(server.url)
                missing = await client.get(server.url.replace("/metrics", "/other"))
                posted = await client.post(server.url)
        finally:
            await server.close()
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    got = samples(text.text)
    assert got[("async_nexus_events_dispatched_total", ())] == 2
    assert ("process_cpu_seconds_total", ()) in got  # the process's own metrics come along
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert missing.status_code == 404 and "/metrics" in missing.text
    assert posted.status_code == 405


async def test_serve_metrics_serves_a_given_registry() -> None:
    registry = CollectorRegistry()
    nexus = AsyncEventNexus()
    nexus.ingest_nowait(Event(1, 1))
    server = await serve_metrics(nexus, port=0, registry=registry)
    try:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            got = samples((await client.get(server.url)).text)
    finally:
        await server.close()
    assert got[("async_nexus_queue_depth", ())] == 1
    assert not any(name.startswith("process_") for name, _ in got)  # only what the registry holds
