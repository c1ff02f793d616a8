"""The example programs of the documentation (docs/examples/) run and do what the pages say.

Code inside the pages themselves (``testcode`` blocks) is run by ``sphinx-build -b doctest``;
this module covers the programs the pages include from files.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from async_nexus import NexusGroup

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def load_example(name: str) -> ModuleType:
    """Import docs/examples/<name>.py as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def read_until(stream: asyncio.StreamReader, wanted: str, seen: list[str], timeout: float = 20) -> None:
    """Read lines into ``seen`` until one contains ``wanted``."""

    async def scan() -> None:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"output ended before {wanted!r}; got {seen!r}")
            seen.append(line)
            if wanted in line:
                return

    await asyncio.wait_for(scan(), timeout)


async def test_logwatch_runs_under_the_runner_and_stops_gracefully(tmp_path: Path) -> None:
    """The tutorial's daemon, as the tutorial runs it: alerts cross the boundary; SIGTERM exits 0."""
    log = tmp_path / "app.log"
    log.write_text("INFO web: started\n")
    env = {
        **os.environ,
        "LOGWATCH_FILE": str(log),
        "LOGWATCH_SUMMARY": "3600",  # no summaries in this test: the alert is what it waits for
        "LOGWATCH_ALERT_AFTER": "2",
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "async_nexus", "run", "logwatch:build", "--app-dir", str(EXAMPLES),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    stderr: list[str] = []
    try:
        await read_until(process.stderr, "running logwatch:build", stderr)
        with log.open("a") as file:  # appended after start: the follower must pick them up
            file.write("ERROR db: refused\nINFO web: healthcheck ok\nERROR db: refused\n")
        stdout: list[str] = []
        await read_until(process.stdout, "ALERT db: 2 errors", stdout)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    rest = (await process.stderr.read()).decode()
    assert "stopped gracefully" in rest, "".join(stderr) + rest
    assert "filtered=1" in rest  # the health check line


async def test_logwatch_alert_crosses_to_the_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same program in-process: the filter, the default handler, the alert in the notifier."""
    logwatch = load_example("logwatch")
    log = tmp_path / "app.log"
    log.write_text("ERROR db: refused\n\nnot a log line\nERROR db: refused\nERROR db: refused\n")
    monkeypatch.setenv("LOGWATCH_FILE", str(log))
    domains = logwatch.build()
    assert list(domains) == ["notifier", "logwatch"]  # a domain before the one that feeds it
    nexus = domains["logwatch"]
    alert_seen = asyncio.Event()

    def spot_alert(event: object, queue: object) -> bool:
        if isinstance(event, logwatch.Alert):
            alert_seen.set()
        return False  # a filter that only looks: the event goes on

    nexus.add_filter(spot_alert)
    group = NexusGroup(*domains.values(), names=list(domains))
    task = group.start()
    try:
        await asyncio.wait_for(alert_seen.wait(), 10)
    finally:
        group.stop()
        await asyncio.wait_for(task, 10)
    # The notifier stopped after the watcher drained, so the alert was dispatched there.
    assert capsys.readouterr().out == "ALERT db: 3 errors\n"
    stats = nexus.stats()
    assert stats["filtered"] == 1  # the blank line
    assert stats["errors"] == 0


def test_parse_gives_types_and_priorities() -> None:
    """``log.<level>`` types with plain-dict payloads, errors before chatter, ``unparsed`` for the rest."""
    logwatch = load_example("logwatch")
    from async_nexus import Event

    def parse(text: str) -> Event:
        return logwatch.parse(Event(7, logwatch.LINE, 0, text), None)

    error, info, junk = parse("ERROR db: refused"), parse("INFO web: up"), parse("junk")
    assert (error.id, error.type, error.priority) == (7, "log.error", -1)
    assert error.payload == {"level": "ERROR", "source": "db", "message": "refused"}
    assert type(error.payload) is dict  # what the journal stores and gives back unchanged
    assert (info.type, info.priority) == ("log.info", 0)
    assert (junk.type, junk.payload) == ("unparsed", "junk")


@pytest.mark.parametrize("name", ["compare_ours"])
async def test_comparison_program_prints_what_the_page_shows(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The comparison page's program, in our library: it runs and prints the page's output."""
    example = load_example(name)
    await asyncio.wait_for(example.main(), 10)
    assert capsys.readouterr().out == example.EXPECTED_OUTPUT


def test_every_example_program_is_tested_here() -> None:
    """A new file in docs/examples/ needs a test in this module; this one notices when it has none."""
    tested = {"logwatch.py", "compare_ours.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def indented_block(text: str, after: str) -> str:
    """The indented block that follows the first line ``after`` in ``text``, unindented."""
    block = text.split(after, 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip("\n") + "\n"


def test_readme_and_the_docs_open_with_one_first_example(tmp_path: Path) -> None:
    """The README's first example is the landing page's (which the doctest build checks), and runs."""
    import subprocess

    root = EXAMPLES.parent.parent
    readme = (root / "README.rst").read_text().split("A first example\n===============\n", 1)[1]
    index = (root / "docs" / "index.rst").read_text().split("A first example\n---------------\n", 1)[1]
    program = indented_block(readme, ".. code-block:: python\n")
    assert program == indented_block(index, ".. testcode::\n")
    printed = indented_block(readme, "It prints::\n")
    assert printed == indented_block(index, ".. testoutput::\n")
    path = tmp_path / "first.py"
    path.write_text(program)
    # The package of this tree, not whichever one the environment has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed


DIAGRAMS = sorted((EXAMPLES.parent / "diagrams").glob("*.py"))


def test_the_pictures_have_their_scripts() -> None:
    """The data-flow, architecture and lifecycle pictures are drawn by the scripts checked below."""
    assert {script.name for script in DIAGRAMS} >= {"dataflow.py", "architecture.py"}


@pytest.mark.parametrize("script", DIAGRAMS, ids=lambda script: script.name)
def test_the_pictures_are_drawn_from_their_source(script: Path) -> None:
    """Each SVG in docs/_static/ is what its script in docs/diagrams/ draws: they are committed together."""
    import subprocess

    command = [sys.executable, str(script), "--check"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


#: The widest line a code or literal block of the docs may have: what the theme shows
#: without scrolling sideways.
BLOCK_WIDTH = 88
#: Directives whose body is shown as code.
CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "testcode", "testoutput", "doctest", "parsed-literal"}


def block_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` for each line of the code and literal blocks of a page, unindented."""
    import re

    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    number = 0
    while number < len(lines):
        stripped = lines[number].strip()
        directive = re.match(r"\.\.\s+([\w-]+)::", stripped)
        if directive:
            is_code = directive.group(1) in CODE_DIRECTIVES
        else:  # a paragraph ending in "::" introduces a literal block; comments do not
            is_code = stripped.endswith("::") and not stripped.startswith("..")
        indent = len(lines[number]) - len(lines[number].lstrip())
        body: list[tuple[int, str]] = []
        following = number + 1
        while following < len(lines) and (
            not lines[following].strip() or len(lines[following]) - len(lines[following].lstrip()) > indent
        ):
            body.append((following + 1, lines[following]))
            following += 1
        if not is_code:
            number += 1
            continue
        content = [(n, line) for n, line in body if line.strip() and not re.match(r"\s*:[\w-]+:", line)]
        if content:
            base = min(len(line) - len(line.lstrip()) for _, line in content)
            found += [(n, line[base:]) for n, line in content]
        number = following
    return found


def test_block_lines_are_found() -> None:
    page = "Text::\n\n    short\n    " + "x" * 100 + "\n\n.. note::\n\n   " + "y" * 100 + "\n"
    assert [len(line) for _, line in block_lines(page)] == [5, 100]


def test_no_code_or_literal_block_line_of_the_docs_is_wider_than_the_page() -> None:
    """Examples and their output fit the page: nothing to scroll sideways."""
    too_wide = [
        f"{path.relative_to(EXAMPLES.parent)}:{number}: {len(line)} characters"
        for path in sorted(EXAMPLES.parent.glob("**/*.rst"))
        for number, line in block_lines(path.read_text())
        if len(line) > BLOCK_WIDTH
    ]
    assert not too_wide, f"lines over {BLOCK_WIDTH} characters (wrap them):\n" + "\n".join(too_wide)
