"""R-accuracy curves of certification runs: PNG plot and long-format CSV.

The plot puts every run on one radius axis with grey marker lines at the true
unrestricted radius s*sqrt(C) (dotted) and the paper's s^2 (dashed) for every
(s, C) among the runs. Marker labels are laid out so that they overlap neither
each other nor the legend: the legend sits below the axes, and each label is
moved down, step by step, until its box is clear of the labels already placed.
Takes ``mrs_jax.analysis.RunSummary`` objects; ``mrs_jax.analysis`` re-exports
these functions.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

import mrs_jax.report._tables as tables
from mrs_jax import rows as metrics

_PAPER = "paper s^2"


def x_max(summaries: Sequence[Any]) -> float:
    """Right end of the radius axis: past every counted radius and every
    s*sqrt(C) marker (the paper's s^2 only where a curve reaches it, so that no
    curve runs flat at 0 over most of the plot)."""
    ends = [s.markers[tables.UNRESTRICTED] for s in summaries]
    for s in summaries:
        finite = [c for c in s.counted_radii if math.isfinite(c)]
        ends.append(max(finite, default=0.0))
    return 1.08 * max(ends)


def y_max(summaries: Sequence[Any]) -> float:
    """Top of the accuracy axis: 10 points above the highest curve, at most 102."""
    top = max((100 * s.certified_accuracy([0.0])[0] for s in summaries), default=0)
    return min(102.0, 10.0 * math.ceil(top / 10.0) + 10.0)


def _label(s) -> str:
    sigma = "" if s.sigma is None else f", sigma={s.sigma:g}"
    return (
        f"{s.name} ({s.mode}{sigma}; clean {100 * s.clean_accuracy:.1f}%, "
        f"empirical {100 * s.empirical_accuracy:.1f}%)"
    )


def figure(summaries: Sequence[Any], *, log_x: bool = False):
    """The curves as a matplotlib Figure on its own Agg canvas, labels laid out.

    The Figure is built directly (no pyplot, no ``matplotlib.use``), so the
    caller's backend and pyplot state are left alone; it is freed like any object.

    Args:
      summaries: ``RunSummary`` objects (checked by ``mrs_jax.analysis``).
      log_x: symlog radius axis (linear below 1).
    """
    # Lazily: importing this module stays light.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from mrs_jax.report._tables import certified_name

    end = x_max(summaries)
    grid = np.linspace(0.0, end, 2001)
    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)  # the renderer the label layout measures text with
    ax = fig.subplots()
    handles = []
    for s in summaries:
        (line,) = ax.plot(grid, 100 * s.certified_accuracy(grid), label=_label(s))
        handles.append(line)
    markers = []
    for size, channels in sorted({(s.size, s.channels) for s in summaries}):
        radii = metrics.radius_markers(size, channels)
        for key, style in ((tables.UNRESTRICTED, ":"), (_PAPER, "--")):
            if radii[key] > end:
                continue  # off the axis: the legend says where
            ax.axvline(radii[key], color="gray", linestyle=style, linewidth=1)
            markers.append((radii[key], f"s={size}, C={channels}: {radii[key]:.3g}"))
    papers = sorted({s.markers[_PAPER] for s in summaries})
    off_axis = [f"{r:.3g}" for r in papers if r > end]
    paper_label = "paper's s^2 threshold"
    if off_axis:
        paper_label += f" ({', '.join(off_axis)}: beyond every certified radius)"
    handles += [
        Line2D([], [], color="gray", linestyle=style, label=label)
        for style, label in (
            (":", "true unrestricted s*sqrt(C)"),
            ("--", paper_label),
        )
    ]
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0.0, end)
    ax.set_ylim(0.0, y_max(summaries))
    ax.set_xlabel("l2 radius R ([0, 1] pixel units)")
    ax.set_ylabel(f"{certified_name(summaries)}\nR-accuracy (%)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _place_marker_labels(fig, ax, markers)
    _legend_below(fig, ax, handles)
    return fig


def _place_marker_labels(fig, ax, markers) -> None:
    """Writes each marker's label by its line, moved down until clear of others."""
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    placed = []
    for radius, text in sorted(markers):
        x_display = ax.transData.transform((radius, 0.0))[0]
        right_side = x_display > axes_box.x0 + 0.7 * axes_box.width
        label = ax.annotate(
            text,
            (radius, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3 if right_side else 3, -3),
            textcoords="offset points",
            ha="right" if right_side else "left",
            va="top",
            fontsize=7,
            color="dimgray",
            bbox=dict(boxstyle="square,pad=0.1", facecolor="white", linewidth=0),
        )
        box = label.get_window_extent(renderer)
        step = box.height + 2
        offset = -3.0
        while any(box.overlaps(other) for other in placed) and box.y0 > axes_box.y0:
            offset -= step * 72.0 / fig.dpi
            label.xyann = (label.xyann[0], offset)
            box = label.get_window_extent(renderer)
        placed.append(box.expanded(1.0, 1.0))


def _legend_below(fig, ax, handles) -> None:
    """The legend under the axes' tick labels and x label, clear of both."""
    renderer = fig.canvas.get_renderer()
    below = ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()).y0
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, below - 0.02),
        bbox_transform=fig.transFigure,
        fontsize=7,
        ncol=1,
        frameon=False,
    )


def plot_curves(
    summaries: Sequence[Any],
    path_png: str | os.PathLike,
    *,
    log_x: bool = False,
) -> None:
    """Writes :func:`figure` as PNG (cropped to keep the legend below the axes)."""
    figure(summaries, log_x=log_x).savefig(path_png, dpi=120, bbox_inches="tight")


def curve_radii(summaries: Sequence[Any]) -> list[float]:
    """Default CSV radii: 101 evenly spaced over the plot's axis, plus the markers."""
    radii = set(np.linspace(0.0, x_max(summaries), 101).tolist())
    for s in summaries:
        radii.update(s.markers.values())
    return sorted(radii)


def write_curves_csv(
    summaries: Sequence[Any], path_csv: str | os.PathLike, radii: Sequence[float]
) -> None:
    """Long-format CSV: run, mode, sigma, size, channels, radius, certified
    accuracy (a fraction), and what it measures ("localised certified" or
    "certified"); one line per run and radius."""
    from mrs_jax.report._tables import certified_name

    with open(path_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["run", "mode", "sigma", "size", "channels", "radius", "certified_accuracy"]
            + ["measure"]
        )
        for s in summaries:
            sigma = "" if s.sigma is None else repr(s.sigma)
            measure = certified_name([s])
            accuracies = s.certified_accuracy(radii)
            for radius, accuracy in zip(radii, accuracies, strict=True):
                writer.writerow(
                    [s.name, s.mode, sigma, s.size, s.channels]
                    + [repr(float(radius)), repr(float(accuracy)), measure]
                )
