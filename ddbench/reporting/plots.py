"""PNG plots where a plot says more than a table: accuracy against IPC, a method's ablations.

matplotlib is imported inside the functions and drives an Agg canvas directly (no pyplot,
no global backend state), so importing this module is free and plotting works headless.
Every plot shows mean accuracy with the standard deviation over seeds as error bars.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Sequence

from ddbench.store.io import atomic_write_bytes

Point = tuple[object, float, float]  # (x, mean, std)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", "-.", ":")


def _title(axes, text: str) -> None:
    axes.set_title(textwrap.fill(text, 72), fontsize=9)


def _figure(width: float = 6.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def line_plot(path: Path, series: dict[str, Sequence[Point]], *, title: str, xlabel: str,
              ylabel: str = "accuracy (%)", log_x: bool = False, categorical: bool = False) -> Path:
    """One line per series, error bars = std. ``categorical`` puts the x values at equal
    spacing with their names as tick labels (layers); otherwise x is numeric."""
    figure = _figure()
    axes = figure.add_subplot()
    categories: list[str] = []
    if categorical:
        for points in series.values():
            for x, _, _ in points:
                if str(x) not in categories:
                    categories.append(str(x))
    for i, (name, points) in enumerate(series.items()):
        if not points:
            continue
        xs = [categories.index(str(x)) if categorical else float(x) for x, _, _ in points]
        means = [mean for _, mean, _ in points]
        stds = [std for _, _, std in points]
        # Distinct markers and dashes keep series apart where their values coincide.
        axes.errorbar(xs, means, yerr=stds, marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                      capsize=4, linewidth=1.5, markersize=7 - min(i, 3), label=name)
    if categorical:
        axes.set_xticks(range(len(categories)))
        axes.set_xticklabels(categories, rotation=20, ha="right")
    else:
        ticks = sorted({float(x) for points in series.values() for x, _, _ in points})
        if log_x:
            axes.set_xscale("log")
        axes.set_xticks(ticks)
        axes.set_xticklabels([f"{t:g}" for t in ticks])
        axes.minorticks_off()
    _title(axes, title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if any(series.values()):
        axes.legend()
    return _save(figure, path)


def bar_plot(path: Path, bars: Sequence[Point], *, title: str, ylabel: str = "accuracy (%)") -> Path:
    """One bar per (label, mean, std), labelled with its value, error bars = std."""
    figure = _figure()
    axes = figure.add_subplot()
    labels = [str(label) for label, _, _ in bars]
    means = [mean for _, mean, _ in bars]
    stds = [std for _, _, std in bars]
    drawn = axes.bar(range(len(bars)), means, yerr=stds, capsize=4, color="#4C72B0")
    axes.bar_label(drawn, labels=[f"{m:.1f}\n± {s:.1f}" for m, s in zip(means, stds)], label_type="center", color="white",
                   fontweight="bold")
    axes.set_xticks(range(len(bars)))
    axes.set_xticklabels(labels)
    axes.set_ylim(0, max([m + s for m, s in zip(means, stds)] + [1.0]) * 1.15)
    _title(axes, title)
    axes.set_ylabel(ylabel)
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def accuracy_vs_ipc(path: Path, series: dict[str, Sequence[Point]], title: str) -> Path:
    """Accuracy against images per class, one line per method; log x when IPC spans 10x or more."""
    values = [float(x) for points in series.values() for x, _, _ in points]
    log_x = bool(values) and min(values) > 0 and max(values) / min(values) >= 10
    return line_plot(path, series, title=title, xlabel="images per class (IPC)", log_x=log_x)
