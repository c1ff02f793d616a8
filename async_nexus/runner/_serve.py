"""The runner's daemon: run a nexus until a signal stops it, and say how it ended as an exit code.

:mod:`async_nexus.runner` re-exports everything public here, and documents the exit codes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .._tasks import stop_on_signals
from ..domains import NexusGroup
from ..errors import BadValue
from ..nexus import AsyncEventNexus, NexusState
from ._target import TargetError, UsageError, build_nexuses

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "serve", "run_daemon"]

# The runner's records keep the runner's logger name, whichever of its modules writes them.
logger = logging.getLogger("async_nexus.runner")

# The exit codes are explained with '#:' comments where the reference documents them, in
# async_nexus.runner; a supervisor sees only the numbers.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _counts(stats: dict[str, Any]) -> str:
    # The totals only: the per-type and per-source breakdowns would make a line per type.
    # (JSON lines carry the whole of stats(); so do the Prometheus metrics.)
    parts = []
    for key, value in stats.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.3f}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


async def _log_stats(nexuses: dict[str, AsyncEventNexus], interval: float) -> None:
    try:
        while True:
            await asyncio.sleep(interval)
            for label, nexus in nexuses.items():
                stats = nexus.stats()
                if len(nexuses) == 1:
                    logger.info("stats: %s", _counts(stats), extra={"stats": stats})
                else:
                    logger.info(
                        "stats: nexus=%s %s", label, _counts(stats), extra={"stats": stats, "nexus": label}
                    )
    except Exception:
        # Nobody awaits this task until the daemon stops, so say it now: an operator watching
        # for stats lines would otherwise see them stop without a word.
        logger.exception("logging the stats every %gs failed; no more stats lines will be written", interval)


async def serve(
    factory: Any,
    *,
    name: str = "the target",
    drain_timeout: float | None = None,
    fail_fast: bool = False,
    stats_interval: float | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    trace: bool = False,
    console: tuple[str, int] | None = None,
    console_token: str | None = None,
    console_readonly: bool = False,
) -> int:
    """Build the nexus (or nexuses) from ``factory`` and run it until it stops; return the exit code.

    SIGINT and SIGTERM ask for a graceful stop (queued events are dispatched, up to the
    drain timeout); the same signal again cancels the loop. ``drain_timeout`` and
    ``fail_fast`` override what the nexus was built with. ``stats_interval`` logs
    ``nexus.stats()`` every so many seconds (should that fail, an error with the traceback
    says so and the stats lines stop; the nexus runs on); ``metrics_port`` serves them as Prometheus
    metrics on ``metrics_host`` (port ``0`` picks a free port, which is logged). ``trace``
    traces each dispatch with OpenTelemetry (:func:`async_nexus.tracing.instrument`).
    ``console`` is ``(host, port)`` to serve the live console at
    (:func:`async_nexus.console.serve_console`, with ``console_token`` and
    ``console_readonly``); it is closed once the nexuses have stopped.

    A factory that gives several nexuses (see :func:`build_nexuses`) has them run as a
    :class:`~async_nexus.NexusGroup`: started in the order given, stopped in reverse; stats
    lines and metrics carry each one's name.

    :raises TargetError: ``factory`` did not give a nexus.
    :raises UsageError: the console's options cannot work (a non-loopback address without a
        token, a token too short).
    """
    try:
        nexuses = await build_nexuses(factory, name=name)
    except TargetError:
        raise
    except Exception:
        logger.exception("building the nexus with %s failed", name)
        return EXIT_FAILED
    for label, nexus in nexuses.items():
        if nexus.state is not NexusState.READY:
            which = f" (nexus {label})" if len(nexuses) > 1 else ""
            raise TargetError(
                f"{name} gave a nexus{which} that is {nexus.state.name}; a nexus runs once, so the target "
                "must give one that has not been started (a factory that builds a new one is simplest)"
            )
        if drain_timeout is not None:
            nexus.drain_timeout = drain_timeout
        if fail_fast:
            nexus.fail_fast = True
    if trace:
        _instrument(nexuses)

    helpers: list[asyncio.Task[None]] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        if metrics_port is not None:
            # optional dependency: imported only when asked for
            from ..metrics import register_nexuses, serve_metrics

            single = next(iter(nexuses.values())) if len(nexuses) == 1 else None
            try:
                server = await serve_metrics(single, port=metrics_port, host=metrics_host)
            except OSError as exc:
                logger.error("cannot serve metrics on %s port %d: %s", metrics_host, metrics_port, exc)
                return EXIT_FAILED
            if single is None:
                register_nexuses(nexuses, server.registry)
            closers.append(server.close)
            logger.info("serving Prometheus metrics on %s", server.url)
        if console is not None:
            from ..console import serve_console

            host, port = console
            try:
                console_server = await serve_console(
                    nexuses, host=host, port=port, token=console_token, readonly=console_readonly
                )
            except BadValue as exc:
                raise UsageError(f"--console: {exc}") from None
            except OSError as exc:
                logger.error("cannot serve the console on %s port %d: %s", host, port, exc)
                return EXIT_FAILED
            closers.append(console_server.close)
            logger.info(
                "serving the console on %s%s%s",
                console_server.url,
                " (with a token: open /?token=TOKEN)" if console_token else "",
                ", read-only" if console_readonly else "",
            )
        if stats_interval is not None:
            helpers.append(asyncio.create_task(_log_stats(nexuses, stats_interval), name="async_nexus stats"))
        return await _run_until_signalled(nexuses, name=name)
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for close in closers:
            await close()


def _instrument(nexuses: dict[str, AsyncEventNexus]) -> None:
    from opentelemetry import trace  # optional dependency: main() checked that it is there

    from ..tracing import instrument

    for nexus in nexuses.values():
        instrument(nexus)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logger.warning(
            "--trace: no OpenTelemetry tracer provider is set, so the spans go nowhere; set one in "
            "the factory (opentelemetry.trace.set_tracer_provider) or run under opentelemetry-instrument"
        )


async def _run_until_signalled(nexuses: dict[str, AsyncEventNexus], *, name: str) -> int:
    group = NexusGroup(*nexuses.values(), names=list(nexuses))
    task = group.start()
    several = len(nexuses) > 1

    def log_signal(signum: signal.Signals, count: int) -> None:
        queued = sum(nexus.stats()["queued"] for nexus in nexuses.values())
        if count == 1:
            order = f" nexus {', then '.join(reversed(nexuses))}," if several else ""
            logger.info(
                "%s received: stopping%s gracefully, %d events queued (drain timeout %s); "
                "send it again to stop at once",
                signum.name,
                order,
                queued,
                ", ".join(sorted({f"{nexus.drain_timeout:g}s" for nexus in nexuses.values()})),
            )
        else:
            logger.warning(
                "%s received again: stopping at once; %d queued events are not dispatched",
                signum.name,
                queued,
            )

    received: list[signal.Signals] = []
    try:
        with stop_on_signals(group.stop, task, on_signal=log_signal, what=name) as received:
            listed = f"; nexuses {', '.join(nexuses)}" if several else ""
            logger.info(
                "running %s (pid %d%s); SIGINT or SIGTERM stops it gracefully", name, os.getpid(), listed
            )
            await task
    except asyncio.CancelledError:
        if len(received) < 2:
            raise  # we were cancelled from outside: not ours to turn into an exit code
        return 128 + received[-1].value
    except Exception:
        logger.exception("the nexus loop failed; exiting with %d", EXIT_FAILED)
        return EXIT_FAILED
    for label, nexus in nexuses.items():
        stats = nexus.stats()
        if several:
            logger.info(
                "stopped gracefully: nexus=%s %s",
                label,
                _counts(stats),
                extra={"stats": stats, "nexus": label},
            )
        else:
            logger.info("stopped gracefully: %s", _counts(stats), extra={"stats": stats})
    return EXIT_OK


def run_daemon(
    target: Any,
    *,
    name: str | None = None,
    use_uvloop: bool = False,
    **options: Any,
) -> int:
    """Run :func:`serve` in a new event loop (uvloop's with ``use_uvloop``); return the exit code.

    ``target`` is what :func:`load_target` returned: a nexus or a factory. ``options`` are
    :func:`serve`'s. Logging is left as it is; :func:`main` configures it.

    :raises TargetError: the target did not give a nexus.
    :raises UsageError: uvloop is asked for and not installed.
    """
    if name is None:
        name = getattr(target, "__qualname__", None) or repr(target)
    coroutine = serve(target, name=name, **options)
    if not use_uvloop:
        return asyncio.run(coroutine)
    try:
        import uvloop
    except ImportError:
        coroutine.close()
        raise UsageError(
            "--uvloop needs the uvloop package, which is not installed; install it with "
            "pip install 'async-nexus[uvloop]', or run without --uvloop"
        ) from None
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)
    loop = uvloop.new_event_loop()  # pragma: no cover - Python 3.10
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
