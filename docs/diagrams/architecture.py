"""Draw the pictures of the architecture page: ``docs/_static/architecture.svg`` and
``docs/_static/lifecycle.svg``.

The SVGs are committed; this script is their source. After a change here, run
``python docs/diagrams/architecture.py`` and commit the three files (a test checks that
they agree). Standard library only; the drawing helpers are the data-flow diagram's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dataflow import INK, MUTED, arrow, box, line, lines, text

STATIC = Path(__file__).resolve().parent.parent / "_static"

# fill, stroke of each kind of box
CALLER = ("#e7effb", "#4c72b0")  # who brings an event in
STEP = ("#fdf0e4", "#c56b1c")  # the parts an event passes through
LOOP = ("#e6f4ea", "#3a8a4f")
ROUTING = ("#f1ebfa", "#7352a8")
PART = ("#f6f8fa", "#8c959f")  # the parts that serve the others
FACE = ("#ffffff", "#1f2328")
BOLD = {"weight": "bold"}
SMALL = {"size": 12, "colour": MUTED}


def svg(width: int, height: int, title: str, body: list[str]) -> str:
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="title">',
        f'<title id="title">{title}</title>',
        "<defs>"
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker>'
        "</defs>",
        # A background of its own keeps the picture readable on a dark page too.
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="8" fill="#ffffff"/>',
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def labelled(
    x: float, y: float, w: float, h: float, colours: tuple[str, str], name: str, rows: list[str]
) -> list[str]:
    """A box with a bold name and a few smaller lines under it, centred."""
    parts = [box(x, y, w, h, colours), text(x + w / 2, y + 20, name, size=13, **BOLD)]  # type: ignore[arg-type]
    parts += lines(x + w / 2, y + 38, rows, step=16, size=12)
    return parts


# -- the parts and the path of one event ----------------------------------------------


def architecture() -> str:
    width, height = 900, 660
    parts: list[str] = []
    head = {"size": 12, "weight": "bold", "colour": MUTED}
    mid = 110  # the height of the path of one event

    # The ways in: callers outside the nexus, each through a door of the admission.
    parts.append(text(96, 24, "WAYS IN (DOORS)", **head))  # type: ignore[arg-type]
    doors = [
        ("ingest(), ingest_nowait()", "INGEST, INGEST_NOWAIT"),
        ("ingest_later(), ingest_at()", "LATER, AT"),
        ("request()", "REQUEST, URGENT_REQUEST"),
        ("a source's SourcePort", "SOURCE, HANDOVER"),
    ]
    top, cell, gap, merge_x = 40, 46, 10, 202
    for i, (call, door) in enumerate(doors):
        y = top + i * (cell + gap)
        parts.append(box(10, y, 174, cell, CALLER))
        parts.append(text(97, y + 19, call, size=12, mono=True))
        parts.append(text(97, y + 36, door, size=11, colour=MUTED))
        parts.append(line([(184, y + cell / 2), (merge_x, y + cell / 2), (merge_x, mid)]))
    parts.append(arrow([(merge_x, mid), (236, mid)]))
    notes = [
        "Converters, producers, timers,",
        "boundaries and transports",
        "all come in as sources.",
        "",
        "Inside: SECONDARY (what a",
        "handler emits or returns)",
        "and LATE_ANSWER (an answer",
        "no request waits for now).",
    ]
    parts += lines(10, 290, notes, step=16, anchor="start", **SMALL)  # type: ignore[arg-type]

    # The face, and the parts it holds.
    parts.append(box(222, 8, 670, 644, FACE))
    face = "AsyncEventNexus (nexus.py): holds the parts, runs the loop once per start"
    parts.append(text(557, 28, face, size=13, **BOLD))  # type: ignore[arg-type]
    under = "the parts: async_nexus._core, private, reached only through the nexus"
    parts.append(text(557, 46, under, size=12, colour=MUTED))

    # The path of one event: admission, queue, loop, routing.
    parts += labelled(236, 70, 140, 80, STEP, "Admission", ["gate, event, chain,", "trace, journal, room"])
    parts.append(arrow([(376, mid), (406, mid)]))
    parts += labelled(406, 70, 130, 80, STEP, "EventQueue", ["by priority, then", "FIFO; bounded"])
    parts.append(arrow([(536, mid), (566, mid)]))
    parts += labelled(566, 70, 130, 80, LOOP, "Dispatcher", ["the loop; yields", "every yield_every"])
    parts.append(arrow([(696, mid), (726, mid)]))
    parts += labelled(726, 70, 150, 80, ROUTING, "Router", ["filters, the type,", "range, pattern, -1"])

    # Handlers: in the loop, or in a lane beside it.
    parts.append(arrow([(760, 150), (760, 170), (661, 170), (661, 190)]))
    parts.append(arrow([(826, 150), (826, 190)]))
    parts += labelled(596, 190, 130, 60, ROUTING, "handlers", ["in the loop"])
    parts += labelled(746, 190, 130, 60, ROUTING, "Lanes", ["concurrency=N"])

    # Secondary events and answers go back in through the admission.
    parts.append(arrow([(596, 220), (306, 220), (306, 150)], dashed=True))
    parts.append(text(388, 212, "secondary events", size=12, colour=MUTED))

    # Outcomes: failures, dead letters, and the release of the event.
    parts.append(arrow([(661, 250), (661, 290)]))
    parts.append(arrow([(811, 250), (811, 290)]))
    outcome = [
        "a failure: the error hook; the last",
        "one makes a dead letter. Release:",
        "the done (or dead) callback, when",
        "a transport acks (or dead-letters)",
    ]
    parts += labelled(596, 290, 280, 110, STEP, "Outcomes, then release", outcome)

    # A retry waits in the scheduler and is placed in the queue again.
    parts.append(arrow([(596, 345), (471, 345), (471, 150)], dashed=True))
    retry = ["a retry, when", "due, is placed"]
    parts += lines(480, 318, retry, step=14, anchor="start", size=12, colour=MUTED)

    # The parts that serve the path.
    parts.append(text(236, 372, "AND THE PARTS THAT SERVE IT", anchor="start", **head))  # type: ignore[arg-type]
    serving = [
        ("Lifecycle", ["one state machine:", "phases and their rules"]),
        ("Registrations", ["check, wrap, build lanes;", "fill the Router"]),
        ("Feeds", ["run the sources, hand", "each the Port"]),
        ("RequestReply", ["requests and their", "answers (Requests)"]),
        ("Scheduler", ["events for later,", "the waits of retries"]),
        ("Keeper", ["the journal: keep,", "replay, let go"]),
        ("Watchdog", ["names what holds", "the event loop"]),
        ("counts", ["stats(), read from", "the parts"]),
    ]
    col_w, row_h = 165, 60
    for i, (name, rows) in enumerate(serving):
        x = 236 + (i % 2) * (col_w + 10)
        y = 382 + (i // 2) * (row_h + 7)
        parts += labelled(x, y, col_w, row_h, PART, name, rows)

    ports = [
        "What the world outside the core",
        "uses are public ports:",
        "SourcePort (sources, boundaries,",
        "transports), trace_with() (tracing),",
        "on_error(), on_dead_letter().",
    ]
    parts.append(text(596, 432, "PUBLIC PORTS", anchor="start", **head))  # type: ignore[arg-type]
    parts += lines(596, 452, ports, step=17, anchor="start", size=12)
    title = (
        "The architecture of a nexus: AsyncEventNexus holds its private parts. An event comes in "
        "through a door of the admission (ingest, later, request, a source), is queued, taken by "
        "the dispatch loop, routed to filters and handlers, in the loop or in a lane; failures "
        "go to the outcomes, and the release of the event calls its done or dead-letter "
        "callback, which is when a transport acknowledges it. Secondary events and retries "
        "come back in."
    )
    return svg(width, height, title, parts)


# -- the lifecycle ------------------------------------------------------------------------

READY_C = ("#e7effb", "#4c72b0")
RUN_C = ("#e6f4ea", "#3a8a4f")
STOP_C = ("#fdf0e4", "#c56b1c")
END_C = ("#eef0f2", "#59636e")


def phase(x: float, y: float, name: str, state: str, colours: tuple[str, str], w: float = 130) -> list[str]:
    return [
        box(x, y, w, 50, colours),
        text(x + w / 2, y + 22, name, size=13, weight="bold", mono=True),
        text(x + w / 2, y + 40, f"state {state}", size=11, colour=MUTED),
    ]


def lifecycle() -> str:
    width, height = 860, 385
    parts: list[str] = []
    row1, row2, row3 = 40, 170, 290
    parts += phase(20, row1, "READY", "READY", READY_C)
    parts += phase(250, row1, "STARTING", "STARTING", RUN_C)
    parts += phase(480, row1, "LOOPING", "LOOPING", RUN_C)
    parts += phase(20, row2, "STOP_ON_START", "READY", READY_C, w=150)
    parts += phase(250, row2, "STOPPING", "STOPPING", STOP_C)
    parts += phase(480, row2, "DRAINING", "STOPPING", STOP_C)
    parts += phase(700, row2, "CLOSING", "STOPPING", STOP_C, w=140)
    parts += phase(700, row3, "HALTING", "STOPPING", STOP_C, w=140)
    parts += phase(700, row1, "STOPPED", "STOPPED", END_C, w=140)

    label = {"size": 12}
    # The start.
    parts.append(arrow([(150, row1 + 25), (250, row1 + 25)]))
    parts.append(text(200, row1 + 18, "start()", mono=True, **label))  # type: ignore[arg-type]
    parts.append(arrow([(380, row1 + 25), (480, row1 + 25)]))
    parts.append(text(430, row1 + 18, "first turn", **label))  # type: ignore[arg-type]
    # stop() from each running phase, and before the start.
    parts.append(arrow([(85, row1 + 50), (85, row2)]))
    parts.append(text(92, row1 + 85, "stop()", anchor="start", mono=True, **label))  # type: ignore[arg-type]
    parts.append(arrow([(170, row2 + 25), (250, row2 + 25)]))
    parts.append(text(210, row2 + 18, "start()", mono=True, **label))  # type: ignore[arg-type]
    parts.append(arrow([(315, row1 + 50), (315, row2)]))
    parts.append(text(322, row1 + 85, "stop()", anchor="start", mono=True, **label))  # type: ignore[arg-type]
    parts.append(arrow([(545, row1 + 50), (545, 130), (345, 130), (345, row2)]))
    parts.append(text(552, row1 + 85, "stop()", anchor="start", mono=True, **label))  # type: ignore[arg-type]
    # The graceful way down.
    parts.append(arrow([(380, row2 + 25), (480, row2 + 25)]))
    parts += lines(430, row2 - 22, ["sources", "stopped"], step=14, **label)  # type: ignore[arg-type]
    parts.append(arrow([(610, row2 + 25), (700, row2 + 25)]))
    parts += lines(655, row2 - 22, ["drained,", "loop left"], step=14, **label)  # type: ignore[arg-type]
    parts.append(arrow([(770, row2), (770, row1 + 50)]))
    parts.append(text(778, row1 + 85, "closed", anchor="start", **label))  # type: ignore[arg-type]
    # The halt, from any running phase before CLOSING.
    parts.append(arrow([(770, row3), (770, row2 + 50)]))
    parts.append(text(778, row2 + 85, "loop left", anchor="start", **label))  # type: ignore[arg-type]
    parts.append(arrow([(315, row2 + 50), (315, row3 + 25), (700, row3 + 25)], dashed=True))
    joins = line([(545, row2 + 50), (545, row3 + 25)]).replace("/>", ' stroke-dasharray="5 4"/>')
    parts.append(joins)
    halts = ["from STARTING, LOOPING,", "STOPPING or DRAINING:", "drain timeout, fail_fast,", "cancellation"]
    parts += lines(328, row2 + 76, halts, step=15, anchor="start", size=12, colour=MUTED)
    parts.append(
        text(
            20,
            height - 14,
            "A graceful stop: STOPPING, DRAINING, CLOSING, STOPPED. "
            "The loop runs once per start; a nexus does not restart.",
            size=12,
            anchor="start",
            colour=MUTED,
        )
    )
    title = (
        "The phases of a nexus: READY, start() to STARTING, the loop's first turn to LOOPING; "
        "stop() to STOPPING (or STOP_ON_START before the start), DRAINING once the sources are "
        "stopped, CLOSING once the loop has left, STOPPED once everything is closed. A drain "
        "timeout, a fail_fast failure or a cancellation leads to HALTING, then CLOSING."
    )
    return svg(width, height, title, parts)


PICTURES = {"architecture.svg": architecture, "lifecycle.svg": lifecycle}


def main(argv: list[str]) -> int:
    """Write the SVGs; with ``--check``, only say whether the committed ones are current."""
    stale = []
    for name, draw in PICTURES.items():
        out = STATIC / name
        picture = draw()
        if "--check" in argv:
            if not out.exists() or out.read_text(encoding="utf-8") != picture:
                stale.append(out)
            continue
        out.write_text(picture, encoding="utf-8")
        print(f"wrote {out}")
    for out in stale:
        print(f"{out} is out of date: run python {Path(__file__).as_posix()}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
