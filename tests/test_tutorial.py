"""The tutorial runs when typed in from the page.

The test reads ``docs/tutorial.rst`` the way a reader does: it takes the page's Python code
blocks in page order (a ``literalinclude`` resolved by Sphinx's own reader, so exactly the text
the page shows), joins them into one program and runs that program as a process of its own.
A block captioned "Preview ..." shows code that a later step types in, and is left out, as the
page tells the reader to do.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "tutorial.rst"
DIRECTIVE = re.compile(r"^\.\. (literalinclude|code-block|code|sourcecode)::\s*(.*)$")
OPTION = re.compile(r"^\s+:([\w-]+):\s*(.*)$")


def code_blocks(page: Path) -> list[tuple[str, str]]:
    """``(caption, code)`` of each Python block of ``page``, in page order."""
    from sphinx.config import Config
    from sphinx.directives.code import LiteralIncludeReader

    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        match = DIRECTIVE.match(lines[i])
        i += 1
        if match is None:
            continue
        kind, argument = match.groups()
        options: dict[str, str] = {}
        while i < len(lines) and (option := OPTION.match(lines[i])):
            options[option.group(1)] = option.group(2)
            i += 1
        body: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            body.append(lines[i])
            i += 1
        caption = options.get("caption", "")
        if kind == "literalinclude":
            if options.get("language", "python") != "python":
                continue
            reader_options: dict[str, object] = {
                k: v for k, v in options.items() if k not in ("language", "caption")
            }
            if "dedent" in reader_options:
                reader_options["dedent"] = int(str(reader_options["dedent"]))
            text, _ = LiteralIncludeReader(page.parent / argument, reader_options, Config()).read()
            blocks.append((caption, text))
        elif argument.strip() in ("python", "python3", "py"):
            indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            blocks.append((caption, "\n".join(b[indent:] for b in body).strip() + "\n"))
    return blocks


def tutorial_program() -> str:
    """The tutorial's code blocks as the one program a reader ends up with."""
    parts = [code for caption, code in code_blocks(PAGE) if not caption.startswith("Preview")]
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"


def test_the_page_shows_imports_logger_and_main_block() -> None:
    """What a reader types in needs nothing the page does not show."""
    program = tutorial_program()
    tree = ast.parse(program)  # also: the blocks join into valid Python
    imported = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {"logging", "os", "AsyncEventNexus", "FileTail", "SqliteJournal", "Timer", "run_all"} <= imported
    assert re.search(r"^logger = logging\.getLogger\(", program, re.MULTILINE)
    assert 'if __name__ == "__main__":' in program
    assert "run_all(*build().values())" in program


def test_every_python_line_of_the_page_fits_the_column() -> None:
    """Code wider than the theme's code column (about 80 characters) is clipped on the page."""
    wide = [
        line
        for _, code in code_blocks(PAGE) + code_blocks(DOCS / "introduction.rst")
        for line in code.splitlines()
        if len(line) > 80
    ]
    assert wide == []


def run_until(
    program: Path,
    env: dict[str, str],
    done: Callable[[list[str]], bool],
    then: Callable[[], None] | None = None,
) -> tuple[list[str], str]:
    """Run ``program`` until its output so far satisfies ``done``, then (after ``then()``) stop it
    with SIGINT, as the page does with Ctrl-C; return what it printed and its stderr."""
    process = subprocess.Popen(
        [sys.executable, str(program)],
        cwd=program.parent,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while not done(seen):
            line = process.stdout.readline()
            assert line, f"it ended early; printed {seen!r}; stderr: {process.stderr.read()}"
            seen.append(line)
            assert time.monotonic() < deadline, f"not there yet; printed {seen!r}"
        if then is not None:
            then()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Error" not in err and "Traceback" not in err, err
    return seen + out.splitlines(keepends=True), err


def summary_with(counts: str) -> Callable[[list[str]], bool]:
    """``done`` for :func:`run_until`: a summary line that shows ``counts`` was printed."""
    return lambda seen: any(line.startswith("summary #") and counts in line for line in seen)


def logwatch(tmp_path: Path, summary: str) -> tuple[Path, Path, dict[str, str]]:
    """The page's program, its log with three database errors, and the environment to run it."""
    program = tmp_path / "logwatch.py"
    program.write_text(tutorial_program(), encoding="utf-8")
    log = tmp_path / "app.log"
    log.write_text("ERROR db: refused\nERROR db: refused\nINFO web: healthcheck ok\nERROR db: refused\n")
    return program, log, {**os.environ, "LOGWATCH_FILE": str(log), "LOGWATCH_SUMMARY": summary}


def test_the_typed_in_program_runs_and_does_what_the_page_says(tmp_path: Path) -> None:
    """The joined blocks run as a program: alerts, summaries, a graceful stop on SIGINT."""
    program, log, env = logwatch(tmp_path, "0.5")

    def append_junk() -> None:
        with log.open("a") as file:  # appended while it runs: the tail picks it up
            file.write("not a log line\n")
        time.sleep(0.5)

    seen, err = run_until(program, env, summary_with("ERROR=3"), then=append_junk)
    assert "ALERT db: 3 errors\n" in seen
    assert "cannot parse line 'not a log line'" in err
    assert (tmp_path / "logwatch.journal").is_file()  # next to the log, as the page says


def test_a_restart_reads_only_the_new_lines_and_raises_no_old_alert(tmp_path: Path) -> None:
    """The page's restart: what was handled is not read again, what came while down is."""
    program, log, env = logwatch(tmp_path, "0.3")
    first, _ = run_until(program, env, summary_with("ERROR=3"))
    assert "ALERT db: 3 errors\n" in first
    with log.open("a") as file:  # while it is down
        file.write("ERROR db: refused\nWARNING cache: evicting 120 entries\n")
    second, _ = run_until(program, env, summary_with("ERROR=1, WARNING=1"))
    assert not [line for line in second if "ALERT" in line], second
    assert not [line for line in second if "ERROR=3" in line or "ERROR=4" in line], second


def test_the_program_refuses_a_log_file_that_does_not_exist(tmp_path: Path) -> None:
    """The page says the file must exist first; the program says so too, instead of limping on."""
    program = tmp_path / "logwatch.py"
    program.write_text(tutorial_program(), encoding="utf-8")
    missing = tmp_path / "missing.log"
    done = subprocess.run(
        [sys.executable, str(program)],
        env={**os.environ, "LOGWATCH_FILE": str(missing)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert f"{missing} does not exist; create it first" in done.stderr
