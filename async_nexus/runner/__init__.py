"""Run a nexus as a daemon: ``python -m async_nexus run package.module:factory``.

The runner imports the target (a nexus, or a function or ``async`` function that returns
one, or several in a list, tuple or dict), configures logging, runs the nexus with SIGINT
and SIGTERM wired to a graceful stop (a second signal stops at once), and exits with a code
a supervisor understands:

* ``0`` after a graceful stop;
* ``1`` when the loop died of an error (or building the nexus failed);
* ``2`` for a usage error: bad options, a target that cannot be imported or is not a nexus;
* ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM) when a second signal cut the
  graceful stop short: queued events were not dispatched.

Several nexuses run as a :class:`~async_nexus.NexusGroup`: started in the order given,
stopped in the reverse order, each after the one given after it has drained.

Only the standard library is needed; ``--uvloop`` needs the ``[uvloop]`` extra,
``--metrics-port`` the ``[prometheus]`` extra and ``--trace`` the ``[otel]`` extra.

The work is split by job: :func:`load_target` and :func:`build_nexus` find the nexus
(:func:`build_nexuses` the nexuses of a target that gives several), :func:`configure_logging`
and :class:`JsonFormatter` set up logging, :func:`serve` and :func:`run_daemon` run it;
this module is the command line, and the one place to import all of them from.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__, dead_letters_cli
from . import _serve
from ._logging import JsonFormatter, configure_logging
from ._serve import run_daemon, serve
from ._target import TargetError, UsageError, build_nexus, build_nexuses, load_target

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "TargetError",
    "JsonFormatter",
    "load_target",
    "build_nexus",
    "build_nexuses",
    "configure_logging",
    "serve",
    "run_daemon",
    "build_parser",
    "main",
]

# Bound again here, not merely imported, so that the '#:' comments document them on this page.
#: Exit code after a graceful stop.
EXIT_OK = _serve.EXIT_OK
#: Exit code when the loop died of an error, or building the nexus failed.
EXIT_FAILED = _serve.EXIT_FAILED
#: Exit code for a usage error: bad options, or a target that is not importable or not a nexus.
EXIT_USAGE = _serve.EXIT_USAGE

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


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        host = "127.0.0.1"
    elif not host:
        raise argparse.ArgumentTypeError(f"no host before the colon in {text!r}; write HOST:PORT or PORT")
    return host.strip("[]"), _port(port)


def build_parser() -> argparse.ArgumentParser:
    """The ``async-nexus`` command line (``python -m async_nexus``)."""
    parser = argparse.ArgumentParser(
        prog="async-nexus",
        description="Run an Async Nexus program as a daemon, and act on its dead letters.",
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
            "function (awaited in the loop that runs the nexus) returning one; or several, in a "
            "list, tuple or dict, which start in that order and stop in reverse"
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
        "--trace",
        action="store_true",
        help=(
            "trace every dispatch with OpenTelemetry, through the tracer provider the target sets "
            "(needs the [otel] extra)"
        ),
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics endpoint listens on (default: 127.0.0.1)",
    )
    run.add_argument(
        "--console",
        type=_address,
        metavar="[HOST:]PORT",
        help=(
            "serve the live console (a page of counts, charts and dead letters, and its JSON API) "
            "at http://HOST:PORT/; HOST is 127.0.0.1 unless given, and any other address needs "
            "--console-token (port 0 picks a free port and logs it)"
        ),
    )
    run.add_argument(
        "--console-token",
        metavar="TOKEN",
        help=(
            "a secret of at least 16 characters that every console request must carry (open "
            "/?token=TOKEN in a browser); the environment variable ASYNC_NEXUS_CONSOLE_TOKEN "
            "gives it without showing it to other users of ps"
        ),
    )
    run.add_argument(
        "--console-readonly",
        action="store_true",
        help="show the console without its buttons and refuse every change through it",
    )
    dead_letters_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``async-nexus`` command: parse ``argv``, run the target, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "dead-letters":
        return dead_letters_cli.run(args)
    error_prefix = f"{parser.prog} {args.command}: error:"
    token = args.console_token or os.environ.get("ASYNC_NEXUS_CONSOLE_TOKEN") or None
    if args.console is None and (args.console_token or args.console_readonly):
        print(
            f"{error_prefix} --console-token and --console-readonly go with --console [HOST:]PORT",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
    if args.trace:
        try:
            import opentelemetry.trace  # noqa: F401
        except ImportError:
            print(
                f"{error_prefix} --trace needs the opentelemetry-api package, which is not "
                "installed; install it with pip install 'async-nexus[otel]'",
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
            trace=args.trace,
            console=args.console,
            console_token=token,
            console_readonly=args.console_readonly,
        )
    except UsageError as exc:
        cause = exc.__cause__
        if cause is not None:
            # The target's own code failed while importing: its traceback is what to fix.
            import traceback

            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        print(f"{error_prefix} {exc}", file=sys.stderr)
        return EXIT_USAGE
