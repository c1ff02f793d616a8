"""The events per second each nexus handled and failed, per type, over the last minutes.

:class:`Rates` takes :meth:`~async_nexus.AsyncEventNexus.stats` once per ``interval`` and
keeps the differences in a ring of ``window`` samples, so the page's chart shows the last
minutes as soon as it opens, whoever watched before. It costs one ``stats()`` per nexus per
interval, whether the page is open or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..nexus import AsyncEventNexus

# Internal: the console's server serves what it keeps.
__all__: list[str] = []

logger = logging.getLogger("async_nexus.console")

#: Types drawn one by one; the rest are added up as "(other types)".
MAX_TYPES = 8


class Rates:
    """Samples of the handled and failed counts of some nexuses, per type."""

    def __init__(
        self, nexuses: Mapping[str, AsyncEventNexus], *, interval: float = 1.0, window: int = 300
    ) -> None:
        self.nexuses = nexuses
        self.interval = interval
        self.times: deque[float] = deque(maxlen=window)
        # nexus -> type -> (handled per sample, failed per sample)
        self.series: dict[str, dict[str, tuple[deque[float], deque[float]]]] = {name: {} for name in nexuses}
        self._last: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in nexuses}
        self._window = window
        self._failing = False

    def sample(self) -> None:
        """Take one sample of every nexus now."""
        first = not self.times
        self.times.append(time.time())
        for name, nexus in self.nexuses.items():
            by_type: dict[Any, dict[str, int]] = nexus.stats()["by_type"]
            last = self._last[name]
            series = self.series[name]
            seen = set()
            for event_type, counts in by_type.items():
                label = str(event_type)
                seen.add(label)
                now = (counts.get("handled", 0), counts["failed"])
                # A type new since the last sample had all its events since then; at the
                # first sample, what came before is not a rate of now.
                before = last.get(label, now if first else (0, 0))
                last[label] = now
                if label not in series:
                    # A new type: zeros back to the start of the window, so the lines align.
                    zeros = [0.0] * (len(self.times) - 1)
                    series[label] = (deque(zeros, self._window), deque(zeros, self._window))
                handled, failed = series[label]
                handled.append(max(0, now[0] - before[0]) / self.interval)
                failed.append(max(0, now[1] - before[1]) / self.interval)
            for label, (handled, failed) in series.items():
                if label not in seen:
                    handled.append(0.0)
                    failed.append(0.0)

    def snapshot(self) -> dict[str, Any]:
        """What the page draws: per nexus, the sample times and a handled and failed line per type."""
        drawn: dict[str, Any] = {}
        for name, series in self.series.items():
            busiest = sorted(series, key=lambda label: -sum(series[label][0]) - sum(series[label][1]))
            types = {label: _lines(*series[label]) for label in busiest[:MAX_TYPES]}
            rest = busiest[MAX_TYPES:]
            if rest:
                width = len(self.times)
                handled = [sum(series[label][0][i] for label in rest) for i in range(width)]
                failed = [sum(series[label][1][i] for label in rest) for i in range(width)]
                types["(other types)"] = {"handled": handled, "failed": failed}
            drawn[name] = {"interval": self.interval, "times": list(self.times), "types": types}
        return drawn

    async def run(self) -> None:
        """Sample every ``interval`` until cancelled."""
        while True:
            try:
                self.sample()
                self._failing = False
            except Exception:
                # The chart stops moving, so say why (once, not every second); the console goes on.
                if not self._failing:
                    logger.exception("sampling the stats for the console's chart failed")
                self._failing = True
            await asyncio.sleep(self.interval)


def _lines(handled: deque[float], failed: deque[float]) -> dict[str, list[float]]:
    return {"handled": list(handled), "failed": list(failed)}
