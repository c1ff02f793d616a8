"""The charts of a run: one PNG per scenario, one bar per implementation and loop.

Each chart is drawn at the width of the documentation's text column (7.5 inches), so
shown there its labels are as large as the text around them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import SCENARIOS
from .report import OURS

#: Inches: the width of a chart, and the height of one bar's row.
WIDTH, ROW = 7.5, 0.32
#: Points: the labels and numbers; the title.
FONT, TITLE_FONT = 10, 11


def _short(value: float, _position: object = None) -> str:
    """Axis numbers as 800k or 1.5M rather than with an offset."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}k" if value >= 1e4 else f"{value:g}"


def chart_name(key: str) -> str:
    """The file name of scenario ``key``'s chart."""
    return f"benchmarks-{key}.png"


def plotted(rows: list[dict[str, Any]]) -> list[str]:
    """The scenarios of ``rows`` that have a figure to draw, in table order."""
    return [k for k in SCENARIOS if any(r["key"] == k and r["value"] is not None for r in rows)]


def plot(rows: list[dict[str, Any]], directory: Path, title: str = "") -> str:
    """Draw a chart per scenario into ``directory``; "" on success, else why none was drawn.

    ``title``, when given (the date and command of a run that is not the documentation's),
    heads each chart with the scenario's name; in the docs, the section heading names it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    directory.mkdir(parents=True, exist_ok=True)
    colours = {"asyncio": "#4c72b0", "uvloop": "#dd8452"}
    for key in plotted(rows):
        scenario = SCENARIOS[key]
        cells = [r for r in rows if r["key"] == key and r["value"] is not None]
        figure, ax = plt.subplots(figsize=(WIDTH, 0.9 + ROW * len(cells)))
        labels = [f"{r['name']} ({r['loop']})" for r in cells]
        bars = ax.barh(
            range(len(cells)),
            [r["value"] for r in cells],
            color=[colours.get(r["loop"], "grey") if r["impl"] != "ideal" else "#aaaaaa" for r in cells],
        )
        for bar, r in zip(bars, cells, strict=True):
            if r["impl"] == OURS:
                bar.set_edgecolor("black")
                bar.set_linewidth(1.5)
            text = f" {r['value']:,.0f}" if r["value"] >= 10 else f" {r['value']:.2f}"
            if r["note"].startswith("stopped"):
                text = f" ≥{r['value']:,.0f} (cap)"
            ax.annotate(
                text,
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                va="center",
                fontsize=FONT - 1,
            )
        ax.set_yticks(range(len(cells)), labels, fontsize=FONT)
        ax.invert_yaxis()
        ax.set_xlim(left=0, right=max(r["value"] for r in cells) * 1.3)
        if title:  # in the docs, the section heading names the scenario
            better = "higher is better" if scenario.higher_is_better else "lower is better"
            heading = f"{scenario.title} ({scenario.unit}, {better})\n{title}"
            ax.set_title(heading, fontsize=TITLE_FONT, loc="left")
        ax.tick_params(axis="x", labelsize=FONT - 1)
        ax.xaxis.set_major_formatter(FuncFormatter(_short))
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        figure.tight_layout()
        figure.savefig(directory / chart_name(key), dpi=150)
        plt.close(figure)
    return ""
