"""Draw the data-flow diagram of the introduction: ``docs/_static/dataflow.svg``.

The SVG is committed; this script is its source. After a change here, run
``python docs/diagrams/dataflow.py`` and commit both files (a test checks that
they agree). Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().parent.parent / "_static" / "dataflow.svg"
WIDTH, HEIGHT = 760, 400
FONT = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
MONO = "SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
INK = "#1f2328"
MUTED = "#59636e"

# fill, stroke of each kind of box
SOURCE = ("#e7effb", "#4c72b0")
QUEUE = ("#fdf0e4", "#c56b1c")
LOOP = ("#e6f4ea", "#3a8a4f")
ROUTING = ("#f1ebfa", "#7352a8")
BOUNDARY = ("#eef0f2", "#59636e")


def box(x: float, y: float, w: float, h: float, colours: tuple[str, str]) -> str:
    fill, stroke = colours
    return (
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
    )


def text(
    x: float,
    y: float,
    words: str,
    *,
    size: int = 14,
    anchor: str = "middle",
    weight: str = "normal",
    colour: str = INK,
    mono: bool = False,
) -> str:
    family = MONO if mono else FONT
    return (
        f'<text x="{x}" y="{y}" font-family="{family}" font-size="{size}" '
        f'font-weight="{weight}" fill="{colour}" text-anchor="{anchor}">{escape(words)}</text>'
    )


def lines(x: float, y: float, rows: list[str], *, step: int = 19, **kwargs: object) -> list[str]:
    return [text(x, y + i * step, row, **kwargs) for i, row in enumerate(rows)]  # type: ignore[arg-type]


def arrow(points: list[tuple[float, float]], *, dashed: bool = False) -> str:
    path = " ".join(f"{x},{y}" for x, y in points)
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return (
        f'<polyline points="{path}" fill="none" stroke="{INK}" stroke-width="1.5"'
        f'{dash} marker-end="url(#head)"/>'
    )


def line(points: list[tuple[float, float]]) -> str:
    path = " ".join(f"{x},{y}" for x, y in points)
    return f'<polyline points="{path}" fill="none" stroke="{INK}" stroke-width="1.5"/>'


def draw() -> str:
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        'aria-labelledby="title">',
        '<title id="title">The data flow of a nexus: sources put events into one queue; '
        "one dispatch loop takes them out one at a time and routes each through filters, "
        "handlers and the default handler; handlers may put secondary events back into the "
        "queue, and a boundary carries chosen types to another nexus.</title>",
        "<defs>"
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker>'
        "</defs>",
        # A background of its own keeps the picture readable on a dark page too.
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" rx="8" fill="#ffffff"/>',
    ]
    head = {"size": 12, "weight": "bold", "colour": MUTED}
    parts += [
        text(92, 24, "SOURCES", **head),  # type: ignore[arg-type]
        text(280, 24, "ONE QUEUE", **head),  # type: ignore[arg-type]
        text(445, 24, "ONE LOOP", **head),  # type: ignore[arg-type]
        text(647, 24, "ROUTING", **head),  # type: ignore[arg-type]
    ]

    # Sources: four kinds, each with an arrow into the queue.
    sources = ["converters (pull)", "producers (push)", "timers", "await ingest(e)"]
    top, cell, gap = 40, 34, 8
    merge_x, queue_y = 195, 115
    for i, name in enumerate(sources):
        y = top + i * (cell + gap)
        parts.append(box(10, y, 165, cell, SOURCE))
        parts.append(text(92, y + 22, name, mono=name.startswith("await")))
        parts.append(line([(175, y + cell / 2), (merge_x, y + cell / 2), (merge_x, queue_y)]))
    parts.append(arrow([(merge_x, queue_y), (215, queue_y)]))

    # The queue and the loop.
    parts.append(box(215, 70, 130, 90, QUEUE))
    parts += lines(280, 100, ["bounded,", "by priority,", "then FIFO"])
    parts.append(arrow([(345, queue_y), (380, queue_y)]))
    parts.append(box(380, 70, 130, 90, LOOP))
    parts += lines(445, 100, ["dispatch loop:", "one event", "at a time"])
    parts.append(arrow([(510, queue_y), (545, queue_y)]))

    # Routing, in order.
    parts.append(box(545, 40, 205, 150, ROUTING))
    steps = [
        "1. filters",
        "2. handlers for the type",
        "3. range or pattern",
        "4. default handler (-1)",
        "5. else: the error hook",
    ]
    parts += lines(560, 68, steps, step=26, anchor="start")

    # Secondary events go back into the same queue.
    parts.append(arrow([(600, 190), (600, 240), (280, 240), (280, 160)]))
    parts.append(text(440, 260, "secondary events (put on the queue, or returned)", size=13))

    # Chosen types cross a boundary into another nexus.
    parts.append(arrow([(700, 190), (700, 300)]))
    parts.append(text(690, 250, "chosen types", size=13, anchor="end"))
    parts.append(box(410, 300, 340, 88, BOUNDARY))
    parts.append(text(580, 325, "BOUNDARY", size=13, weight="bold"))
    parts += lines(
        580,
        347,
        ["a handler in this nexus, a producer in another:", "its own queue, its own loop"],
        size=13,
    )
    parts.append(
        text(
            10,
            330,
            "Another process or machine: a transport",
            size=13,
            anchor="start",
            colour=MUTED,
        )
    )
    parts.append(
        text(10, 349, "(ZeroMQ, Redis Streams) is a boundary too.", size=13, anchor="start", colour=MUTED)
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    """Write the SVG; with ``--check``, only say whether the committed one is current."""
    svg = draw()
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != svg:
            print(f"{OUT} is out of date: run python {Path(__file__).as_posix()}")
            return 1
        return 0
    OUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
