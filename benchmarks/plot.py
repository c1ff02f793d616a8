"""One PNG of the run: a bar chart per scenario, one bar per implementation and loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import SCENARIOS
from .report import OURS


def _short(value: float, _position: object = None) -> str:
    """Axis numbers as 800k or 1.5M rather than with an offset."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}k" if value >= 1e4 else f"{value:g}"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> str:
    """Draw the chart into ``path``; "" on success, else why no chart was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    keys = [k for k in SCENARIOS if any(r["key"] == k and r["value"] is not None for r in rows)]
    columns = 2
    lines = (len(keys) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(13, 3.2 * lines), squeeze=False)
    colours = {"asyncio": "#4c72b0", "uvloop": "#dd8452"}
    for ax, key in zip(axes.flat, keys, strict=False):
        scenario = SCENARIOS[key]
        cells = [r for r in rows if r["key"] == key and r["value"] is not None]
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
                text = f" ≥{r['value']:,.0f}, stopped at the cap"
            ax.annotate(
                text,
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                va="center",
                fontsize=7,
            )
        ax.set_yticks(range(len(cells)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(left=0, right=max(r["value"] for r in cells) * 1.18)
        better = "higher is better" if scenario.higher_is_better else "lower is better"
        ax.set_title(f"{scenario.title} ({scenario.unit}, {better})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(_short))
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return ""
