"""Prometheus metrics for a nexus, read from ``nexus.stats()`` when they are scraped.

Needs the ``[prometheus]`` extra (``prometheus-client``). Nothing is added to the dispatch
loop: :class:`NexusCollector` reads the counts the nexus keeps anyway, at scrape time.

* :func:`register_nexus` adds a nexus to a registry, for programs that already expose one
  (``prometheus_client.make_asgi_app(registry)`` in a Starlette or FastAPI app, say);
  :func:`register_nexuses` adds several, told apart by a label.
* :func:`serve_metrics` serves a registry over HTTP from the running event loop, without a
  thread; the runner's ``--metrics-port`` uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Union

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .nexus import AsyncEventNexus

__all__ = ["NexusCollector", "register_nexus", "register_nexuses", "MetricsServer", "serve_metrics"]

# stats() key -> (metric name without namespace, kind, help). Numbers not listed here are
# exported as gauges under their own name, so a count added to stats() shows up by itself.
_SCALARS: dict[str, tuple[str, str, str]] = {
    "ingested": ("events_ingested", "counter", "Events accepted into the queue, secondary events included."),
    "dispatched": ("events_dispatched", "counter", "Events taken from the queue by the dispatch loop."),
    "filtered": ("events_filtered", "counter", "Events consumed by a filter."),
    "unhandled": ("events_unhandled", "counter", "Events no handler and no default handler took."),
    "failed": ("events_failed", "counter", "Events whose handling finally failed (after retries)."),
    "errors": ("errors", "counter", "Reports to the error hook: failed events, failing sources and more."),
    "queued": ("queue_depth", "gauge", "Events in the queue now."),
    "high_water": ("queue_high_water", "gauge", "The most events the queue has held at once."),
    "uptime": ("uptime_seconds", "gauge", "Seconds the dispatch loop has run."),
}
# Mappings in stats() -> the label their keys become.
_LABELS = {"by_type": "type", "by_source": "source"}
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")

Family = Union[CounterMetricFamily, GaugeMetricFamily]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class NexusCollector:
    """A Prometheus collector that reads ``nexus.stats()`` each time it is scraped.

    Metric names start with ``namespace`` (``async_nexus_``): the counters
    ``events_ingested_total``, ``events_dispatched_total``, ``events_filtered_total``,
    ``events_unhandled_total``, ``events_failed_total`` and ``errors_total``; the gauges
    ``queue_depth``, ``queue_high_water`` and ``uptime_seconds``; per event type
    ``events_dispatched_by_type_total{type="..."}`` (and ``filtered``, ``unhandled``,
    ``failed``); per source ``events_ingested_by_source_total{source="..."}``.

    :param nexus: the nexus to read.
    :param namespace: prefix of every metric name.
    :param labels: constant labels on every sample, e.g. ``{"nexus": "orders"}`` when one
        process exports several nexuses to one registry.
    """

    def __init__(
        self,
        nexus: AsyncEventNexus,
        *,
        namespace: str = "async_nexus",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.nexus = nexus
        self.namespace = namespace
        self.labels = dict(labels or {})

    def collect(self) -> Iterable[Metric]:
        """Build the metric families from one call of ``nexus.stats()``."""
        names, values = list(self.labels), list(self.labels.values())
        for key, value in self.nexus.stats().items():
            if _number(value):
                family = self._family(key, names)
                family.add_metric(values, value)
                yield family
            elif isinstance(value, Mapping):
                yield from self._labelled(key, value, names, values)

    def _family(self, key: str, label_names: list[str], *, suffix: str = "") -> Family:
        name, kind, text = _SCALARS.get(key, (_NOT_NAME.sub("_", key), "gauge", f"nexus.stats()[{key!r}]."))
        if suffix:
            text = f"{text.rstrip('.')}, {suffix.strip('_').replace('_', ' ')}."
        full = f"{self.namespace}_{name}{suffix}"
        if kind == "counter":
            return CounterMetricFamily(full, text, labels=label_names)
        return GaugeMetricFamily(full, text, labels=label_names)

    def _labelled(
        self, key: str, mapping: Mapping[Any, Any], names: list[str], values: list[str]
    ) -> Iterable[Metric]:
        # {label: count} or {label: {count name: count}}: one family per count name, named
        # like the total it breaks down (by_source counts what was ingested).
        label = _LABELS.get(key, "key")
        families: dict[str, Family] = {}
        for label_value, counts in mapping.items():
            if _number(counts):
                counts = {"ingested" if key == "by_source" else "": counts}
            elif not isinstance(counts, Mapping):
                continue
            for count, number in counts.items():
                if not _number(number):
                    continue
                family = families.get(count)
                if family is None:
                    family = self._family(count or key, [*names, label], suffix=f"_{key}" if count else "")
                    families[count] = family
                family.add_metric([*values, str(label_value)], number)
        yield from families.values()


def register_nexus(
    nexus: AsyncEventNexus,
    registry: CollectorRegistry,
    *,
    namespace: str = "async_nexus",
    labels: Mapping[str, str] | None = None,
) -> NexusCollector:
    """Add a :class:`NexusCollector` for ``nexus`` to ``registry`` and return it."""
    collector = NexusCollector(nexus, namespace=namespace, labels=labels)
    registry.register(collector)
    return collector


def register_nexuses(
    nexuses: Mapping[str, AsyncEventNexus],
    registry: CollectorRegistry,
    *,
    label: str = "nexus",
    namespace: str = "async_nexus",
) -> None:
    """Add several nexuses to ``registry``, each sample labelled ``label="<its name>"``.

    ``nexuses`` maps names to nexuses. Each metric is exported once, with a sample per
    nexus, as the exposition format wants.
    """
    collectors = [NexusCollector(n, namespace=namespace, labels={label: name}) for name, n in nexuses.items()]
    registry.register(_Merged(collectors))


class _Merged:
    """Collectors whose families of one name are merged into one family."""

    def __init__(self, collectors: list[NexusCollector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for collector in self.collectors:
            for family in collector.collect():
                known = families.setdefault(family.name, family)
                if known is not family:
                    known.samples.extend(family.samples)
        return list(families.values())


class MetricsServer:
    """A small HTTP endpoint in the running event loop: ``GET /metrics`` renders a registry.

    Made by :func:`serve_metrics`; :meth:`close` stops it.
    """

    def __init__(self, registry: CollectorRegistry, server: asyncio.Server) -> None:
        self.registry = registry
        self._server = server

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when port ``0`` was asked for)."""
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.sockets[0].getsockname()[0])

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        """Stop listening and wait until the server is closed."""
        self._server.close()
        await self._server.wait_closed()


async def _answer(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request_line = await asyncio.wait_for(reader.readline(), 10)
        accept = ""
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        method, _, rest = request_line.decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method not in ("GET", "HEAD"):
            status, content_type, body = "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n"
        elif path not in ("/metrics", "/"):
            status, content_type, body = "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        else:
            encoder, content_type = choose_encoder(accept)
            status, body = "200 OK", encoder(registry)
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, UnicodeError):
        pass  # a client that went away or spoke nonsense: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve_metrics(
    nexus: AsyncEventNexus | None = None,
    *,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    process_metrics: bool = True,
) -> MetricsServer:
    """Serve Prometheus metrics at ``http://host:port/metrics`` from the running loop.

    Without ``registry`` a new one is made holding ``nexus``'s metrics and, with
    ``process_metrics``, the process's (CPU, memory, file descriptors, garbage collector,
    Python version). With ``registry`` it is served as it is; ``nexus``, if given, is added
    to it. Port ``0`` picks a free port: read it from :attr:`MetricsServer.port`.
    """
    if registry is None:
        registry = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
    if nexus is not None:
        register_nexus(nexus, registry)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer(registry, reader, writer)

    server = await asyncio.start_server(answer, host, port)
    return MetricsServer(registry, server)
