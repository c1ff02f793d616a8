"""The runner, ``python -m async_nexus run package.module:factory``, as real subprocesses.

The targets live in tests/daemons/. Each test waits for lines the daemon writes (the
runner's "running ..." log line says the signal handlers are in place), never for time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_nexus import AsyncEventNexus, __version__
from async_nexus import runner as runner_module
from async_nexus.runner import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # upper bound for every wait; the daemons answer far sooner
READY = r"running tests\.daemons\.orders:\w+ \(pid \d+\); SIGINT or SIGTERM stops it gracefully"
BACKLOG = 300  # tests/daemons/orders.py


class Daemon:
    """A runner subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = asyncio.Event()
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read("stdout", process.stdout)),
            asyncio.create_task(self._read("stderr", process.stderr)),
        ]

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> Daemon:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "async_nexus",
            "run",
            *args,
            cwd=ROOT,
            # Without PYTHONUNBUFFERED: the runner must make stdout line-buffered by itself.
            env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self, name: str, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            self.lines[name].append(raw.decode().rstrip("\n"))
            self._changed.set()

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.lines["stdout"], "--- stderr", *self.lines["stderr"]])

    async def wait_line(self, pattern: str, *, stream: str = "stderr") -> re.Match[str]:
        """The first line of ``stream`` that ``pattern`` matches (searching), once it is there."""

        async def until() -> re.Match[str]:
            while True:
                for line in self.lines[stream]:
                    match = re.search(pattern, line)
                    if match:
                        return match
                if self.process.returncode is not None and all(r.done() for r in self._readers):
                    raise AssertionError(f"exited {self.process.returncode} without {pattern!r}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(until(), WAIT)
        except (AssertionError, asyncio.TimeoutError) as exc:
            raise AssertionError(
                f"no {stream} line matched {pattern!r} ({exc!r}):\n{self.output()}"
            ) from None

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def exit_code(self) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), WAIT)
            await asyncio.wait_for(asyncio.gather(*self._readers), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"the daemon did not exit:\n{self.output()}") from None
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Daemons started by a test; any still running at its end are killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.kill()


async def launch(daemons: list[Daemon], *args: str, env: dict[str, str] | None = None) -> Daemon:
    daemon = await Daemon.start(*args, env=env)
    daemons.append(daemon)
    return daemon


# -- graceful stop, forced stop, drain timeout ----------------------------------------------


async def test_sigterm_drains_the_backlog_and_exits_0(daemons: list[Daemon], tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    daemon = await launch(daemons, "tests.daemons.orders:backlog", env={"DAEMON_OUT": str(out)})
    await daemon.wait_line(READY)
    daemon.send(signal.SIGTERM)
    # The first event waits for stop(): the rest are all still queued when the signal lands.
    stopping = await daemon.wait_line(r"SIGTERM received: stopping gracefully, (\d+) events queued")
    assert int(stopping.group(1)) == BACKLOG - 1
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert out.read_text().split() == [str(number) for number in range(BACKLOG)]
    assert any(
        f"stopped gracefully: ingested={BACKLOG} dispatched={BACKLOG}" in line
        for line in daemon.lines["stderr"]
    )


async def test_sigint_stops_gracefully_too(daemons: list[Daemon], tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    daemon = await launch(daemons, "tests.daemons.orders:backlog", env={"DAEMON_OUT": str(out)})
    await daemon.wait_line(READY)
    daemon.send(signal.SIGINT)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert len(out.read_text().split()) == BACKLOG


async def test_a_second_signal_stops_at_once(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:blocked", "--drain-timeout", "600")
    await daemon.wait_line(READY)
    await daemon.wait_line(r"ENTERED 1", stream="stdout")
    daemon.send(signal.SIGTERM)
    await daemon.wait_line(r"SIGTERM received: stopping gracefully, 1 events queued \(drain timeout 600s\)")
    # The handler never returns, so only the second signal can end it.
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 128 + signal.SIGTERM, daemon.output()
    await daemon.wait_line(r"SIGTERM received again: stopping at once; 1 queued events are not dispatched")


async def test_drain_timeout_option_bounds_the_graceful_stop(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:slow", "--drain-timeout", "0.2")
    await daemon.wait_line(READY)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    # 100 events of 50 ms each cannot all pass in 0.2 s: the nexus says what it left.
    await daemon.wait_line(r"drain timeout of 0\.2s expired; \d+ queued events were not dispatched")


# -- errors --------------------------------------------------------------------------------


async def test_a_handler_error_under_fail_fast_exits_1(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:failing", "--fail-fast")
    assert await daemon.exit_code() == 1, daemon.output()
    await daemon.wait_line(r"the nexus loop failed; exiting with 1")
    await daemon.wait_line(r"ValueError: order 3 is malformed")
    assert daemon.lines["stdout"] == ["HANDLED 1", "HANDLED 2"]  # nothing after the failure


async def test_json_lines_carry_the_traceback_of_a_failure(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:failing", "--fail-fast", "--log-format", "json")
    assert await daemon.exit_code() == 1, daemon.output()
    records = [json.loads(line) for line in daemon.lines["stderr"]]
    failed = [r for r in records if r["message"] == "the nexus loop failed; exiting with 1"]
    assert failed and failed[0]["level"] == "ERROR"
    assert failed[0]["exception"].startswith("Traceback (most recent call last):")
    assert failed[0]["exception"].endswith("ValueError: order 3 is malformed")


async def test_without_fail_fast_a_handler_error_is_logged_and_the_loop_goes_on(
    daemons: list[Daemon],
) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:failing")
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    await daemon.wait_line(r"ValueError: order 3 is malformed")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert daemon.lines["stdout"] == ["HANDLED 1", "HANDLED 2", "HANDLED 4", "HANDLED 5"]


async def test_a_failing_factory_exits_1_with_its_traceback(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:broken_factory")
    assert await daemon.exit_code() == 1, daemon.output()
    await daemon.wait_line(r"building the nexus with tests\.daemons\.orders:broken_factory failed")
    await daemon.wait_line(r"RuntimeError: the database is not reachable")


async def test_a_missing_module_exits_2_naming_it_and_the_target_form(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.nowhere:build")
    assert await daemon.exit_code() == EXIT_USAGE, daemon.output()
    message = await daemon.wait_line(r"async-nexus run: error: (.*)")
    assert "cannot import module 'tests.daemons.nowhere'" in message.group(1)
    assert "no module named 'tests.daemons.nowhere'" in message.group(1)
    assert "write the target as package.module:factory" in message.group(1)


# -- the factory -----------------------------------------------------------------------------


async def test_an_async_factory_is_awaited_in_the_loop_that_runs_the_nexus(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:built_in_the_loop")
    await daemon.wait_line(r"HANDLED 1 SAME LOOP True LOOP asyncio", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


async def test_a_nexus_object_is_a_target_too(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:READY_MADE")
    await daemon.wait_line(r"HANDLED 1 FROM THE MODULE'S NEXUS", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


async def test_uvloop_option_runs_on_uvloop(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:built_in_the_loop", "--uvloop")
    await daemon.wait_line(r"HANDLED 1 SAME LOOP True LOOP uvloop", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


async def test_the_demo_runs_under_the_runner(daemons: list[Daemon]) -> None:
    daemon = await Daemon.start("demo.async_events:build")
    daemons.append(daemon)
    await daemon.wait_line(r"running demo\.async_events:build")
    await daemon.wait_line(r"^heartbeat 1$", stream="stdout")
    daemon.send(signal.SIGINT)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    await daemon.wait_line(r"stopped gracefully: ingested=\d+")


# -- logging, stats, metrics ------------------------------------------------------------------


async def test_json_log_format_writes_one_json_object_per_line(daemons: list[Daemon]) -> None:
    daemon = await launch(
        daemons, "tests.daemons.orders:counted", "--log-format", "json", "--stats-interval", "0.05"
    )
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    await daemon.wait_line(r'"dispatched": 5')  # a stats line taken after the five
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    records = [json.loads(line) for line in daemon.lines["stderr"]]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(records[0])
    ready = [r for r in records if r["message"].startswith("running tests.daemons.orders:counted")]
    assert ready and ready[0]["level"] == "INFO" and ready[0]["logger"] == "async_nexus.runner"
    stats = [r["stats"] for r in records if r["message"].startswith("stats: ")]
    assert any(s["dispatched"] == 5 and s["by_type"]["1"]["dispatched"] == 5 for s in stats)


async def test_stats_interval_logs_a_stats_line(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:counted", "--stats-interval", "0.05")
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    line = await daemon.wait_line(r"INFO async_nexus\.runner: stats: ingested=5 dispatched=5 .*queued=0")
    assert "errors=0" in line.string
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


async def test_log_level_hides_info_lines(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:counted", "--log-level", "warning")
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert daemon.lines["stderr"] == []


async def test_metrics_endpoint_serves_the_counts(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:counted", "--metrics-port", "0")
    url = (await daemon.wait_line(r"serving Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)")).group(
        1
    )
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(url)
        missing = await client.get(url.replace("/metrics", "/nothing"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["async_nexus_events_ingested_total"]) == 5
    assert float(samples["async_nexus_events_dispatched_total"]) == 5
    assert float(samples['async_nexus_events_dispatched_by_type_total{type="1"}']) == 5
    assert float(samples["async_nexus_errors_total"]) == 0
    assert float(samples["async_nexus_queue_depth"]) == 0
    assert "process_resident_memory_bytes" in samples
    assert missing.status_code == 404
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


# -- the command line, in process (no loop is started) ----------------------------------------


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() configures the root logger and extends sys.path; undo both afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("tests.daemons.orders", "is not of the form package.module:factory"),
        ("tests.daemons.orders:", "is not of the form package.module:factory"),
        (
            "tests.daemons.orders:backlgo",
            "'tests.daemons.orders' has no attribute 'backlgo' (target 'tests.daemons.orders:backlgo'); "
            "it defines: READY_MADE, backlog, blocked, broken_factory, built_in_the_loop, counted, failing, "
            "returns_nothing, say, slow; write the target as package.module:factory",
        ),
        ("tests.daemons.orders:GatedNexus.nope", "'tests.daemons.orders:GatedNexus' has no attribute 'nope'"),
        (
            "tests.daemons.orders:NOT_A_FACTORY",
            "is 42 (a int), not an AsyncEventNexus or a function returning one",
        ),
        (
            "tests.daemons.orders:say",
            "takes arguments (line: 'str') -> 'None', but the runner calls it with none",
        ),
        (
            "tests.daemons.orders:returns_nothing",
            "returned None (a NoneType); the factory must return an AsyncEventNexus",
        ),
        ("nowhere_at_all.sub:build", "no module named 'nowhere_at_all'"),
    ],
)
def test_bad_targets_exit_2_with_a_message_naming_what_is_missing(
    target: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["run", target]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("async-nexus run: error: "), err
    assert expected in err


def test_an_import_that_fails_inside_the_module_shows_its_traceback(
    capsys: pytest.CaptureFixture[str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["run", "tests.daemons.broken_import:build"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" in err and "tests/daemons/broken_import.py" in err
    assert "importing module 'tests.daemons.broken_import' of target" in err
    assert "cannot import name 'settings'" in err


def test_uvloop_missing_is_a_usage_error_saying_what_to_install(
    capsys: pytest.CaptureFixture[str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert main(["run", "tests.daemons.orders:counted", "--uvloop"]) == EXIT_USAGE
    assert "pip install 'async-nexus[uvloop]'" in capsys.readouterr().err


def test_metrics_without_prometheus_client_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert main(["run", "tests.daemons.orders:counted", "--metrics-port", "0"]) == EXIT_USAGE
    assert "pip install 'async-nexus[prometheus]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "x:y", "--drain-timeout", "0"],
            "--drain-timeout: must be a positive number of seconds, not 0",
        ),
        (["run", "x:y", "--stats-interval", "soon"], "--stats-interval: must be a positive number"),
        (["run", "x:y", "--metrics-port", "70000"], "--metrics-port: must be a port number from 0 to 65535"),
        (["run", "x:y", "--log-format", "xml"], "invalid choice: 'xml'"),
        (["run"], "the following arguments are required: TARGET"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_options_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == EXIT_USAGE
    assert expected in capsys.readouterr().err


def test_help_documents_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "async_nexus", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0
    parser = runner_module.build_parser()
    run_parser = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    for action in run_parser._actions:
        for option in action.option_strings:
            assert option in result.stdout
        assert action.help and " ".join(action.help.split()[:3]) in " ".join(result.stdout.split())
    assert "package.module:factory" in result.stdout
    assert "exit codes: 0 after a graceful stop, 1 when the loop died of an error, 2 for a" in result.stdout


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "async_nexus", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0 and result.stdout.strip() == f"async-nexus {__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "async-nexus"
    assert script.exists(), "reinstall the package (pip install -e .) to get the async-nexus script"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0 and result.stdout.strip() == f"async-nexus {__version__}"


# -- consumers holding buffers are flushed by the graceful stop -----------------------------


async def test_sigterm_writes_out_what_a_redis_sender_buffered(daemons: list[Daemon]) -> None:
    import redis.asyncio as aioredis
    from redis_server import RedisServer

    count = 3000
    server = RedisServer().start()
    client = aioredis.from_url(server.url)
    try:
        # Writes wait while the server is paused: the sender holds every event in its buffer.
        await client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        env = {"FORWARD_URL": server.url, "FORWARD_STREAM": "forwarded", "FORWARD_COUNT": str(count)}
        daemon = await launch(daemons, "tests.daemons.forwarder:build", env=env)
        match = await daemon.wait_line(r"PRODUCED (\d+) BUFFERED (\d+)", stream="stdout")
        assert int(match.group(2)) == count
        daemon.send(signal.SIGTERM)
        await daemon.wait_line(r"SIGTERM received: stopping gracefully")
        await client.execute_command("CLIENT", "UNPAUSE")
        assert await daemon.exit_code() == EXIT_OK, daemon.output()
        assert await client.xlen("forwarded") == count
    finally:
        await client.aclose()
        server.close()


# -- the stats lines ------------------------------------------------------------------------------


class _StatsFailOnce(AsyncEventNexus):
    """A nexus whose first stats() call fails: the first one the stats lines make."""

    failed = False

    def stats(self) -> dict[str, Any]:
        if not self.failed:
            type(self).failed = True
            raise RuntimeError("the counters are broken")
        return super().stats()


async def test_a_crash_of_the_stats_lines_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="async_nexus.runner")
    nexus = _StatsFailOnce()
    serving = asyncio.create_task(runner_module.serve(nexus, name="broken stats", stats_interval=0.01))

    async def crashed() -> logging.LogRecord:
        while True:
            for record in caplog.records:
                if record.levelno == logging.ERROR:
                    return record
            await asyncio.sleep(0.01)

    record = await asyncio.wait_for(crashed(), WAIT)
    await asyncio.sleep(0.05)  # several intervals: no stats line may follow the crash
    nexus.stop()
    assert await asyncio.wait_for(serving, WAIT) == EXIT_OK

    assert record.name == "async_nexus.runner"
    assert "no more stats lines will be written" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert not [r for r in caplog.records if r.getMessage().startswith("stats: ")]
