"""The routing table: which handlers an event of a given type goes to.

Filters run first, for every event. Then the handlers for exactly ``event.type``; else
those of the most specific matching int range or shell-style str pattern; else the
default handlers (type ``-1``). The route of each type is resolved once and kept, so
routing costs one dict lookup however many types are registered; a registration
resolves the kept routes again, in place. Each route also counts what became of its
type's events, which is how ``nexus.stats()`` knows them per type at almost no cost.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Union

from ..consumers import as_callable, describe, index_of
from ..errors import AlreadyRegistered, BadCall, NotRegistered
from ..events import NamedEvent

__all__ = ["DEFAULT", "Handlers", "Route", "Router", "TypeSpec"]

#: The type under which default handlers are registered (the guide's ``-1``).
DEFAULT = -1

#: What ``add_handler`` accepts as a type: an int, a str (exact or shell pattern), an
#: inclusive ``(start, end)`` int range, or a :class:`~async_nexus.NamedEvent` subclass.
TypeSpec = Union[int, str, "tuple[int, int]", type]

#: ``(function, is_async)`` pairs, in registration order. ``is_async`` is ``None`` for a
#: handler registered with ``concurrency=N``: ``function`` is then its
#: :class:`~async_nexus.lanes.Lane`, called as ``lane(event, item, route)``.
Handlers = tuple[tuple[Callable[..., Any], Union[bool, None]], ...]

_Entry = tuple[object, Callable[..., Any], Union[bool, None]]
_PATTERN_CHARS = frozenset("*?[")
# Types beyond this many share one route object, so a stream of ever-new types (ids
# used as types, say) cannot grow the table without bound.
_ROUTE_LIMIT = 65536


_COUNTS = ("dispatched", "filtered", "unhandled", "failed", "in_flight")


class Route:
    """Where events of one type go, and what became of them.

    :attr:`lanes` are the lanes of its concurrent handlers, whose room the loop checks.

    The dispatch loop reads :attr:`only` or :attr:`handlers` and bumps the counts; nothing
    else writes the counts.
    """

    __slots__ = ("handlers", "only", "lanes", "dispatched", "filtered", "unhandled", "failed", "in_flight")

    def __init__(self, handlers: Handlers) -> None:
        self.handlers: Handlers = ()
        self.only: tuple[Callable[..., Any], bool | None] | None = None
        self.lanes: tuple[Any, ...] = ()
        self.set_handlers(handlers)
        #: Events of this type taken from the queue.
        self.dispatched = 0
        #: ... consumed by a filter.
        self.filtered = 0
        #: ... that no handler took.
        self.unhandled = 0
        #: ... whose handling raised.
        self.failed = 0
        #: ... being handled now by concurrent handlers.
        self.in_flight = 0

    def set_handlers(self, handlers: Handlers) -> None:
        """Route the type to ``handlers`` from now on."""
        #: The handlers to run, in order; empty when the type is unhandled.
        self.handlers = handlers
        #: The lanes of the concurrent handlers among them, whose room the loop checks.
        self.lanes = tuple(function for function, is_async in handlers if is_async is None)
        #: The handler when there is exactly one and it runs in the loop, which is the case
        #: the loop makes fastest.
        self.only = handlers[0] if len(handlers) == 1 and not self.lanes else None

    def lanes_full(self) -> bool:
        """Whether a concurrent handler of this type holds all the events it may."""
        for lane in self.lanes:
            if lane.held >= lane.limit:
                return True
        return False

    def counts(self) -> dict[str, int]:
        """The counts by name: dispatched, filtered, unhandled, failed, and in flight now."""
        return {name: getattr(self, name) for name in _COUNTS}


class _Range:
    __slots__ = ("start", "end", "entries")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.entries: list[_Entry] = []


class _Pattern:
    __slots__ = ("pattern", "literals", "entries")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # More literal characters: a narrower set of names, so a more specific pattern.
        self.literals = sum(1 for c in pattern if c not in _PATTERN_CHARS)
        self.entries: list[_Entry] = []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Router:
    """Filters and handlers of one nexus, and the cache of resolved routes."""

    def __init__(self, *, multiple: bool = False) -> None:
        self.multiple = multiple
        self._filters: list[_Entry] = []
        #: ``(function, is_async)`` of each filter, in registration order.
        self.filters: Handlers = ()
        self._exact: dict[object, list[_Entry]] = {}
        self._ranges: list[_Range] = []
        self._patterns: list[_Pattern] = []
        #: The route of every type seen so far; the loop reads it directly.
        self.routes: dict[object, Route] = {}
        #: The one route of all types seen after :data:`_ROUTE_LIMIT` others.
        self.overflow = Route(())

    # -- registration ---------------------------------------------------------------

    @staticmethod
    def normalise(spec: object) -> tuple[str, Any]:
        """Classify a type spec as ``("exact", t)``, ``("range", (a, b))`` or ``("pattern", p)``."""
        if isinstance(spec, type):
            if issubclass(spec, NamedEvent):
                return "exact", spec.event_type
            raise BadCall(
                f"event type {spec.__qualname__} is a class but not a NamedEvent subclass; "
                "pass an int, a str, an (start, end) range, or a NamedEvent subclass"
            )
        if _is_int(spec):
            return "exact", spec
        if isinstance(spec, str):
            if _PATTERN_CHARS.intersection(spec):
                return "pattern", spec
            return "exact", spec
        if isinstance(spec, tuple) and len(spec) == 2 and all(_is_int(v) for v in spec):
            start, end = spec
            if start > end:
                raise BadCall(f"event type range {spec!r} is empty: write (start, end) with start <= end")
            return "range", (start, end)
        raise BadCall(
            f"cannot route on event type {spec!r} (of type {type(spec).__qualname__}); "
            "pass an int, a str (shell patterns such as 'sensor.*' allowed), an inclusive "
            "(start, end) tuple of ints, or a NamedEvent subclass"
        )

    def _slot(self, kind: str, key: Any, create: bool) -> list[_Entry] | None:
        if kind == "exact":
            entries = self._exact.get(key)
            if entries is None and create:
                entries = self._exact[key] = []
            return entries
        if kind == "range":
            for item in self._ranges:
                if (item.start, item.end) == key:
                    return item.entries
            if not create:
                return None
            new_range = _Range(*key)
            self._ranges.append(new_range)
            return new_range.entries
        for pattern in self._patterns:
            if pattern.pattern == key:
                return pattern.entries
        if not create:
            return None
        new_pattern = _Pattern(key)
        self._patterns.append(new_pattern)
        return new_pattern.entries

    def add_handler(
        self, spec: object, handler: object, runner: tuple[Callable[..., Any], bool | None] | None = None
    ) -> None:
        """Register ``handler`` for ``spec``; see :meth:`AsyncEventNexus.add_handler`.

        ``runner`` is what runs it, ``(function, is_async)``, when that is not the handler
        itself: wrapped in a policy, or a lane (``is_async`` ``None``).
        """
        kind, key = self.normalise(spec)
        if runner is None:
            runner = as_callable(handler, "handler")
        entries = self._slot(kind, key, create=True)
        assert entries is not None
        if entries and not self.multiple:
            raise AlreadyRegistered(
                f"a handler for event type {spec!r} is already registered "
                f"({describe(entries[0][0])}); create the nexus with multiple=True to run "
                "several handlers for one type, or register an EventFanout"
            )
        entries.append((handler, *runner))
        self._resolve_again()

    def remove_handler(self, spec: object, handler: object) -> None:
        """Remove ``handler`` registered for ``spec``; :class:`NotRegistered` if it is not."""
        kind, key = self.normalise(spec)
        entries = self._slot(kind, key, create=False) or []
        index = index_of(entries, handler)
        if index < 0:
            raise NotRegistered(f"{describe(handler)} is not registered for event type {spec!r}")
        del entries[index]
        if not entries:
            if kind == "exact":
                del self._exact[key]
            elif kind == "range":
                self._ranges = [r for r in self._ranges if r.entries]
            else:
                self._patterns = [p for p in self._patterns if p.entries]
        self._resolve_again()

    def handler_of(self, runner: object) -> object | None:
        """The handler registered with ``runner`` (what runs it), or None if none is now."""
        ranges, patterns = (r.entries for r in self._ranges), (p.entries for p in self._patterns)
        for entries in (*self._exact.values(), *ranges, *patterns):
            for handler, function, _ in entries:
                if function is runner:
                    return handler
        return None

    def add_filter(self, filter: object) -> None:
        """Append ``filter`` to the filters; see :meth:`AsyncEventNexus.add_filter`."""
        function, is_async = as_callable(filter, "filter")
        self._filters.append((filter, function, is_async))
        self.filters = tuple((f, a) for _, f, a in self._filters)

    def remove_filter(self, filter: object) -> None:
        """Remove ``filter``; :class:`NotRegistered` if it is not registered."""
        index = index_of(self._filters, filter)
        if index < 0:
            raise NotRegistered(f"{describe(filter)} is not a registered filter")
        del self._filters[index]
        self.filters = tuple((f, a) for _, f, a in self._filters)

    def consumers(self) -> list[object]:
        """Every handler object registered, once each, in registration order per type."""
        found: dict[int, object] = {}
        slots = [*self._exact.values(), *(r.entries for r in self._ranges)]
        slots += [p.entries for p in self._patterns]
        for entries in slots:
            for handler, _, _ in entries:
                found.setdefault(id(handler), handler)
        return list(found.values())

    def registrations(self) -> list[tuple[object, object, Callable[..., Any], bool | None]]:
        """``(type, handler, function, is_async)`` of every handler, in registration order per type.

        ``type`` is the registered int or str, or a ``(start, end)`` range; ``function`` and
        ``is_async`` are what runs it (a lane when ``is_async`` is ``None``).
        """
        found: list[tuple[object, object, Callable[..., Any], bool | None]] = []
        for spec, entries in [
            *self._exact.items(),
            *(((r.start, r.end), r.entries) for r in self._ranges),
            *((p.pattern, p.entries) for p in self._patterns),
        ]:
            found += [(spec, handler, function, is_async) for handler, function, is_async in entries]
        return found

    def clear(self) -> None:
        """Forget every filter and handler."""
        self._filters.clear()
        self.filters = ()
        self._exact.clear()
        self._ranges.clear()
        self._patterns.clear()
        self._resolve_again()

    # -- resolution -------------------------------------------------------------------

    def route(self, event_type: object) -> Route:
        """The route of ``event_type``, resolved on first use and kept."""
        route = self.routes.get(event_type)
        if route is not None:
            return route
        handlers = self._handlers(event_type)
        if len(self.routes) >= _ROUTE_LIMIT:
            # Counted together; resolved each time, which is slower but bounded.
            self.overflow.set_handlers(handlers)
            return self.overflow
        route = self.routes[event_type] = Route(handlers)
        return route

    def _handlers(self, event_type: object) -> Handlers:
        return tuple((f, a) for _, f, a in self._resolve(event_type))

    def _resolve_again(self) -> None:
        # Registrations are rare and the kept routes few: resolve them all now rather
        # than check for staleness on every event.
        for event_type, route in self.routes.items():
            route.set_handlers(self._handlers(event_type))

    def _resolve(self, event_type: object) -> list[_Entry]:
        exact = self._exact.get(event_type)
        if exact:
            return exact
        if _is_int(event_type) and self._ranges:
            best: _Range | None = None
            for item in self._ranges:
                if item.start <= event_type <= item.end and (  # type: ignore[operator]
                    best is None or item.end - item.start < best.end - best.start
                ):
                    best = item
            if best is not None:
                return best.entries
        if isinstance(event_type, str) and self._patterns:
            chosen: _Pattern | None = None
            for pattern in self._patterns:
                if fnmatch.fnmatchcase(event_type, pattern.pattern) and (
                    chosen is None or pattern.literals > chosen.literals
                ):
                    chosen = pattern
            if chosen is not None:
                return chosen.entries
        return self._exact.get(DEFAULT, [])
