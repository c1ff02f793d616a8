"""Run a nexus as a daemon: ``python -m async_nexus run package.module:factory``.

The runner imports the target (a nexus, or a function or ``async`` function that returns
one), configures logging, runs the nexus with SIGINT and SIGTERM wired to a graceful stop
(a second signal stops at once), and exits with a code a supervisor understands:

* ``0`` after a graceful stop;
* ``1`` when the loop died of an error (or building the nexus failed);
* ``2`` for a usage error: bad options, a target that cannot be imported or is not a nexus;
* ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM) when a second signal cut the
  graceful stop short: queued events were not dispatched.

Only the standard library is needed; ``--uvloop`` needs the ``[uvloop]`` extra and
``--metrics-port`` the ``[prometheus]`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import __version__
from .nexus import AsyncEventNexus, NexusState

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "TargetError",
    "JsonFormatter",
    "load_target",
    "build_nexus",
    "configure_logging",
    "serve",
    "run_daemon",
    "build_parser",
    "main",
]

logger = logging.getLogger("async_nexus.runner")

#: Exit code after a graceful stop.
EXIT_OK = 0
#: Exit code when the loop died of an error, or building the nexus failed.
EXIT_FAILED = 1
#: Exit code for a usage error: bad options, or a target that is not importable or not a nexus.
EXIT_USAGE = 2

_TARGET_FORM = (
    "write the target as package.module:factory (for example myapp.events:build_nexus), where "
    "factory is an AsyncEventNexus, or a function or async function returning one"
)


class UsageError(Exception):
    """The runner cannot do what it was asked: the message says why and what to do instead.

    :func:`main` prints it and exits with :data:`EXIT_USAGE`.
    """


class TargetError(UsageError):
    """The target could not be imported, or it did not give an :class:`~async_nexus.AsyncEventNexus`.

    The message says what was missing and how to write the target.
    """


# -- the target ---------------------------------------------------------------------------


def load_target(target: str, *, app_dir: str | None = ".") -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    The attribute may be dotted (``module:holder.nexus``). ``app_dir`` is put first on
    :data:`sys.path`, as ``python -m`` does for the current directory, so a target next to the
    program imports also when the runner was started as the ``async-nexus`` script.

    :raises TargetError: the target is malformed, its module is not found, importing it
        failed, or the attribute does not exist.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise TargetError(f"target {target!r} is not of the form package.module:factory; {_TARGET_FORM}")
    if app_dir is not None:
        directory = os.path.abspath(app_dir)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            where = f" (searched from {os.path.abspath(app_dir)})" if app_dir is not None else ""
            raise TargetError(
                f"cannot import module {module_name!r} of target {target!r}: no module named "
                f"{exc.name!r}{where}; check the spelling, run from the directory that holds the "
                f"package or pass --app-dir, and {_TARGET_FORM}"
            ) from None
        raise TargetError(
            f"importing module {module_name!r} of target {target!r} failed: {exc}; the module "
            "itself imports something that is not installed"
        ) from exc
    except Exception as exc:
        raise TargetError(
            f"importing module {module_name!r} of target {target!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    walked = module_name
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(
                f"{walked!r} has no attribute {part!r} (target {target!r}); {_candidates(obj)}{_TARGET_FORM}"
            ) from None
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    return obj


def _candidates(holder: Any) -> str:
    home = getattr(holder, "__name__", None)
    names = sorted(
        name
        for name, value in vars(holder).items()
        if not name.startswith("_")
        and (isinstance(value, AsyncEventNexus) or (inspect.isfunction(value) and value.__module__ == home))
    )
    if not names:
        return ""
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"it defines: {shown}; "


async def build_nexus(obj: Any, *, name: str = "the target") -> AsyncEventNexus:
    """Turn what :func:`load_target` returned into a nexus.

    ``obj`` is a nexus (returned as is), or a function called with no arguments that
    returns one; if it is an ``async`` function, or returns an awaitable, that is awaited
    here, inside the loop that will run the nexus.

    :raises TargetError: ``obj`` is neither, needs arguments, or gave something else.
    """
    if isinstance(obj, AsyncEventNexus):
        return obj
    if not callable(obj):
        raise TargetError(
            f"{name} is {_describe(obj)}, not an AsyncEventNexus or a function returning one; {_TARGET_FORM}"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise TargetError(
            f"{name} takes arguments {inspect.signature(obj)}, but the runner calls it with none; "
            "give it defaults, or point the target at a function that takes no arguments"
        ) from None
    except ValueError:
        pass  # no signature to check (some builtins): just call it
    result = obj()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, AsyncEventNexus):
        raise TargetError(f"{name} returned {_describe(result)}; the factory must return an AsyncEventNexus")
    return result


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (a {type(value).__qualname__})"


# -- logging ------------------------------------------------------------------------------

# What every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``.

    A traceback goes in ``exception``; fields passed with ``extra=`` (the runner's ``stats``)
    are kept under their own names.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str)


def configure_logging(*, level: str | int = "INFO", log_format: str = "plain") -> None:
    """Send all logging to stderr at ``level``, as plain lines or JSON lines (``"json"``).

    It replaces the root logger's handlers, so calling it twice does not double the output.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "plain":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise ValueError(f"log_format must be 'plain' or 'json', not {log_format!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


# -- running ------------------------------------------------------------------------------


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


async def _log_stats(nexus: AsyncEventNexus, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        stats = nexus.stats()
        logger.info("stats: %s", _counts(stats), extra={"stats": stats})


async def serve(
    factory: Any,
    *,
    name: str = "the target",
    drain_timeout: float | None = None,
    fail_fast: bool = False,
    stats_interval: float | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Build the nexus from ``factory`` and run it until it stops; return the exit code.

    SIGINT and SIGTERM ask for a graceful stop (queued events are dispatched, up to the
    drain timeout); the same signal again cancels the loop. ``drain_timeout`` and
    ``fail_fast`` override what the nexus was built with. ``stats_interval`` logs
    ``nexus.stats()`` every so many seconds; ``metrics_port`` serves them as Prometheus
    metrics on ``metrics_host`` (port ``0`` picks a free port, which is logged).

    :raises TargetError: ``factory`` did not give a nexus.
    """
    try:
        nexus = await build_nexus(factory, name=name)
    except TargetError:
        raise
    except Exception:
        logger.exception("building the nexus with %s failed", name)
        return EXIT_FAILED
    if nexus.state is not NexusState.READY:
        raise TargetError(
            f"{name} gave a nexus that is {nexus.state.name}; a nexus runs once, so the target must "
            "give one that has not been started (a factory that builds a new one is simplest)"
        )
    if drain_timeout is not None:
        nexus.drain_timeout = drain_timeout
    if fail_fast:
        nexus.fail_fast = True

    helpers: list[asyncio.Task[None]] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        if metrics_port is not None:
            from .metrics import serve_metrics  # optional dependency: imported only when asked for

            try:
                server = await serve_metrics(nexus, port=metrics_port, host=metrics_host)
            except OSError as exc:
                logger.error("cannot serve metrics on %s port %d: %s", metrics_host, metrics_port, exc)
                return EXIT_FAILED
            closers.append(server.close)
            logger.info("serving Prometheus metrics on %s", server.url)
        if stats_interval is not None:
            helpers.append(asyncio.create_task(_log_stats(nexus, stats_interval), name="async_nexus stats"))
        return await _run_until_signalled(nexus, name=name)
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for close in closers:
            await close()


async def _run_until_signalled(nexus: AsyncEventNexus, *, name: str) -> int:
    loop = asyncio.get_running_loop()
    task = nexus.start()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        queued = nexus.stats()["queued"]
        if len(received) == 1:
            logger.info(
                "%s received: stopping gracefully, %d events queued (drain timeout %gs); "
                "send it again to stop at once",
                signum.name,
                queued,
                nexus.drain_timeout,
            )
            nexus.stop()
        else:
            logger.warning(
                "%s received again: stopping at once; %d queued events are not dispatched",
                signum.name,
                queued,
            )
            task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not supported here
            pass
    logger.info("running %s (pid %d); SIGINT or SIGTERM stops it gracefully", name, os.getpid())
    try:
        await task
    except asyncio.CancelledError:
        if len(received) < 2:
            raise  # we were cancelled from outside: not ours to turn into an exit code
        return 128 + received[-1].value
    except Exception:
        logger.exception("the nexus loop failed; exiting with %d", EXIT_FAILED)
        return EXIT_FAILED
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    stats = nexus.stats()
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


# -- the command line ---------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``async-nexus`` command line (``python -m async_nexus``)."""
    parser = argparse.ArgumentParser(
        prog="async-nexus",
        description="Run an Async Nexus program as a daemon.",
        epilog=(
            "exit codes: 0 after a graceful stop, 1 when the loop died of an error, 2 for a usage "
            "or import error, 128+N when a second signal N stopped it at once."
        ),
    )
    parser.add_argument("--version", action="version", version=f"async-nexus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="import a nexus (or a factory of one) and run it until SIGINT or SIGTERM",
        description=(
            "Import TARGET and run the nexus it gives until SIGINT or SIGTERM, which stop it "
            "gracefully: sources stop, queued events are dispatched, sources close. The same "
            "signal again stops at once."
        ),
        epilog=(
            "exit codes: 0 after a graceful stop, 1 when the loop died of an error, 2 for a usage "
            "or import error, 128+N when a second signal N stopped it at once."
        ),
    )
    run.add_argument(
        "target",
        metavar="TARGET",
        help=(
            "package.module:factory, where factory is an AsyncEventNexus, or a function or async "
            "function (awaited in the loop that runs the nexus) returning one"
        ),
    )
    run.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="directory put first on sys.path before importing TARGET (default: the current directory)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="lowest level of log records written to stderr (default: INFO)",
    )
    run.add_argument(
        "--log-format",
        default="plain",
        choices=["plain", "json"],
        help="plain text lines, or one JSON object per line (default: plain)",
    )
    run.add_argument(
        "--drain-timeout",
        type=_positive,
        metavar="SECONDS",
        help="how long a graceful stop keeps dispatching queued events (default: the nexus's own)",
    )
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first handler, filter or source error and exit 1, instead of logging it",
    )
    run.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop (needs the [uvloop] extra)",
    )
    run.add_argument(
        "--stats-interval",
        type=_positive,
        metavar="SECONDS",
        help="log a line with nexus.stats() every SECONDS",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help=(
            "serve nexus.stats() as Prometheus metrics at http://HOST:PORT/metrics "
            "(needs the [prometheus] extra; 0 picks a free port and logs it)"
        ),
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics endpoint listens on (default: 127.0.0.1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``async-nexus`` command: parse ``argv``, run the target, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    error_prefix = f"{parser.prog} {args.command}: error:"
    if args.metrics_port is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            print(
                f"{error_prefix} --metrics-port needs the prometheus-client package, which is not "
                "installed; install it with pip install 'async-nexus[prometheus]'",
                file=sys.stderr,
            )
            return EXIT_USAGE
    configure_logging(level=args.log_level, log_format=args.log_format)
    if hasattr(sys.stdout, "reconfigure"):
        # A daemon's stdout is a pipe (journald, docker logs): without this, what handlers
        # print would show up kilobytes late.
        sys.stdout.reconfigure(line_buffering=True)
    try:
        factory = load_target(args.target, app_dir=args.app_dir)
        return run_daemon(
            factory,
            name=args.target,
            use_uvloop=args.uvloop,
            drain_timeout=args.drain_timeout,
            fail_fast=args.fail_fast,
            stats_interval=args.stats_interval,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
    except UsageError as exc:
        cause = exc.__cause__
        if cause is not None:
            # The target's own code failed while importing: its traceback is what to fix.
            import traceback

            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        print(f"{error_prefix} {exc}", file=sys.stderr)
        return EXIT_USAGE
