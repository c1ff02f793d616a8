"""Several domains in one daemon, and the runner's --trace, as real subprocesses and real signals.

The targets live in tests/daemons/domains.py and tests/daemons/traced.py; the subprocess
helpers are tests/test_runner.py's. Every wait is for a line the daemon writes, bounded by WAIT.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_runner import ROOT, WAIT, Daemon, launch

from async_nexus import AsyncEventNexus
from async_nexus.runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE, TargetError, build_nexus, build_nexuses, main


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Daemons started by a test; any still running at its end are killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.kill()


PIPELINE_READY = r"running tests\.daemons\.domains:\w+ \(pid \d+; nexuses (\S+), (\S+)\)"


def files(tmp_path: Path) -> dict[str, str]:
    return {
        name: str(tmp_path / f"{name.lower()}.txt")
        for name in ("DOMAINS_OFFERED", "DOMAINS_ACCEPTED", "DOMAINS_HANDLED")
    }


def ids(path: str) -> list[int]:
    # A line is written whole or not at all by the time the process has exited.
    return [int(line) for line in Path(path).read_text().split()]


async def run_all_process(*args: str, env: dict[str, str]) -> Daemon:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.daemons.domains",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Daemon(process)


async def stop_in_flight(daemon: Daemon, env: dict[str, str], signum: signal.Signals) -> int:
    """Signal ``daemon`` once events wait in both domains; return how many were in flight then."""
    await daemon.wait_line(r"^HANDLED 100$", stream="stdout")
    handled = len(ids(env["DOMAINS_HANDLED"]))
    accepted = len(ids(env["DOMAINS_ACCEPTED"]))
    daemon.send(signum)
    return accepted - handled


def assert_every_accepted_event_was_handled(env: dict[str, str]) -> None:
    offered, accepted, handled = (
        ids(env[name]) for name in ("DOMAINS_OFFERED", "DOMAINS_ACCEPTED", "DOMAINS_HANDLED")
    )
    assert len(handled) == len(set(handled)), "an event was handled twice"
    missing = sorted(set(accepted) - set(handled))
    assert not missing, f"{len(missing)} events accepted by front never reached back: {missing[:10]}"
    # The one event being offered when the signal came may have been taken, never more.
    assert set(handled) <= set(offered)
    assert len(handled) - len(accepted) <= 1


# -- the runner with a target that gives several nexuses -----------------------------------------


async def test_runner_sigterm_stops_front_first_and_back_handles_everything_front_accepted(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    env = files(tmp_path)
    daemon = await launch(daemons, "tests.daemons.domains:pipeline", env=env)
    ready = await daemon.wait_line(PIPELINE_READY)
    assert ready.groups() == ("1", "2")  # named by position
    in_flight = await stop_in_flight(daemon, env, signal.SIGTERM)
    assert in_flight > 20, "the test needs events waiting between the domains when the signal lands"
    stopping = await daemon.wait_line(
        r"SIGTERM received: stopping nexus 2, then 1, gracefully, (\d+) events queued"
    )
    assert int(stopping.group(1)) > 0
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert_every_accepted_event_was_handled(env)
    accepted = len(ids(env["DOMAINS_ACCEPTED"]))
    back = await daemon.wait_line(r"stopped gracefully: nexus=1 ingested=(\d+) dispatched=(\d+)")
    front = await daemon.wait_line(r"stopped gracefully: nexus=2 ingested=(\d+) dispatched=(\d+)")
    assert int(back.group(2)) >= accepted and int(front.group(2)) >= accepted


async def test_runner_a_domain_that_dies_stops_the_other_gracefully_and_exits_1(
    daemons: list[Daemon],
) -> None:
    daemon = await launch(daemons, "tests.daemons.domains:dying")
    # No signal: the fragile domain's death alone ends the run.
    assert await daemon.exit_code() == EXIT_FAILED, daemon.output()
    await daemon.wait_line(
        r"the loop of nexus 2 died of ValueError: event 3 broke the fragile domain; "
        r"stopping the others gracefully"
    )
    await daemon.wait_line(r"the nexus loop failed; exiting with 1")
    assert daemon.lines["stdout"] == [f"STEADY {number}" for number in range(1, 6)]


async def test_runner_names_each_domain_in_stats_lines_and_metrics(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    daemon = await launch(
        daemons,
        "tests.daemons.domains:named",
        "--stats-interval",
        "0.05",
        "--metrics-port",
        "0",
        env=files(tmp_path),
    )
    url = (await daemon.wait_line(r"serving Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)")).group(
        1
    )
    await daemon.wait_line(r"nexuses back, front\)")
    await daemon.wait_line(r"^HANDLED 100$", stream="stdout")
    await daemon.wait_line(r"stats: nexus=back ingested=\d+ dispatched=[1-9]")
    await daemon.wait_line(r"stats: nexus=front ingested=\d+ dispatched=[1-9]")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        text = (await client.get(url)).text
    for nexus in ("back", "front"):
        match = re.search(
            rf'^async_nexus_events_dispatched_total{{nexus="{nexus}"}} (\S+)$', text, re.MULTILINE
        )
        assert match and float(match.group(1)) > 0, text
    # One family per metric, with a sample for each domain: what Prometheus accepts.
    assert text.count("# TYPE async_nexus_events_dispatched_total counter") == 1
    assert "process_resident_memory_bytes" in text
    daemon.send(signal.SIGINT)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    await daemon.wait_line(r"SIGINT received: stopping nexus front, then back, gracefully")


# -- what a target may give ---------------------------------------------------------------------


async def test_a_target_may_give_several_nexuses_in_a_list_tuple_or_dict() -> None:
    first, second = AsyncEventNexus(), AsyncEventNexus()
    assert await build_nexuses(lambda: [first, second]) == {"1": first, "2": second}
    assert await build_nexuses((first, second)) == {"1": first, "2": second}

    async def named() -> dict[str, AsyncEventNexus]:
        return {"back": first, "front": second}

    assert list((await build_nexuses(named)).items()) == [("back", first), ("front", second)]
    assert await build_nexuses(first) == {"1": first}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], "gave no nexus (an empty list)"),
        ({"back": AsyncEventNexus(), "front": 7}, "gave 7 (a int) as nexus front; the factory must return"),
        ({1: AsyncEventNexus()}, "gave a dict with the key 1; name each nexus with a string"),
        ("nexus", "is 'nexus' (a str), not an AsyncEventNexus or a function returning one"),
    ],
)
async def test_what_a_target_gives_is_checked(given: object, expected: str) -> None:
    with pytest.raises(TargetError) as info:
        await build_nexuses(given, name="app:build")
    assert expected in str(info.value)


async def test_the_same_nexus_twice_is_refused_and_build_nexus_wants_one() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(TargetError, match="gave the same nexus twice"):
        await build_nexuses([nexus, nexus])
    with pytest.raises(TargetError, match="gave 2 nexuses; build them with build_nexuses"):
        await build_nexus([nexus, AsyncEventNexus()])


# -- run_all in a program's own main() --------------------------------------------------------


async def test_run_all_sigterm_stops_front_first_and_back_handles_everything_front_accepted(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    env = files(tmp_path)
    daemon = await run_all_process(env=env)
    daemons.append(daemon)
    in_flight = await stop_in_flight(daemon, env, signal.SIGTERM)
    assert in_flight > 20, "the test needs events waiting between the domains when the signal lands"
    assert await daemon.exit_code() == 0, daemon.output()
    assert_every_accepted_event_was_handled(env)


async def test_run_all_sigint_stops_gracefully_too(daemons: list[Daemon], tmp_path: Path) -> None:
    env = files(tmp_path)
    daemon = await run_all_process(env=env)
    daemons.append(daemon)
    await stop_in_flight(daemon, env, signal.SIGINT)
    assert await daemon.exit_code() == 0, daemon.output()
    assert_every_accepted_event_was_handled(env)


async def test_run_all_raises_the_error_a_domain_died_of_after_stopping_the_other(
    daemons: list[Daemon],
) -> None:
    daemon = await run_all_process("dying", env={})
    daemons.append(daemon)
    assert await daemon.exit_code() == 1, daemon.output()
    await daemon.wait_line(r"^ValueError: event 3 broke the fragile domain$")
    assert daemon.lines["stdout"] == [f"STEADY {number}" for number in range(1, 6)]


# -- --trace ------------------------------------------------------------------------------------


async def test_trace_option_traces_every_domain_and_the_trace_crosses_the_boundary(
    daemons: list[Daemon],
) -> None:
    daemon = await launch(daemons, "tests.daemons.traced:build", "--trace")
    await daemon.wait_line(r"^HANDLED back 1$", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    spans = [line.split() for line in daemon.lines["stdout"] if line.startswith("SPAN ")]
    # One dispatch in front (into the boundary), one in back (the handler), one trace.
    assert [name for _, *name, _ in spans] == [["dispatch", "order"], ["dispatch", "order"]], spans
    assert spans[0][-1] == spans[1][-1]


async def test_without_trace_option_nothing_is_traced(daemons: list[Daemon]) -> None:
    daemon = await launch(daemons, "tests.daemons.traced:build")
    await daemon.wait_line(r"^HANDLED back 1$", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    assert daemon.lines["stdout"] == ["HANDLED back 1"]


async def test_trace_option_without_a_tracer_provider_says_the_spans_go_nowhere(
    daemons: list[Daemon],
) -> None:
    daemon = await launch(daemons, "tests.daemons.orders:counted", "--trace")
    await daemon.wait_line(r"--trace: no OpenTelemetry tracer provider is set, so the spans go nowhere")
    await daemon.wait_line(r"HANDLED 5", stream="stdout")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == EXIT_OK, daemon.output()


def test_trace_without_opentelemetry_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused before main() configures logging or imports the target: nothing to restore.
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry now raises ImportError
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    assert main(["run", "tests.daemons.orders:counted", "--trace"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--trace needs the opentelemetry-api package" in err
    assert "pip install 'async-nexus[otel]'" in err
