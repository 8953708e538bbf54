"""A report's outputs from run summaries: markdown tables, curves (PNG, CSV) and
the JSON record of each run."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import mrs_jax.report._plots as plots
import mrs_jax.report._tables as tables
from mrs_jax.report._summary import RunSummary
from mrs_jax.report._tables import certified_name


def _check_summaries(summaries: Sequence[RunSummary]) -> list[RunSummary]:
    summaries = list(summaries)
    if not summaries:
        raise ValueError("summaries is empty")
    for i, s in enumerate(summaries):
        if not isinstance(s, RunSummary):
            raise TypeError(f"summaries[{i}] must be a RunSummary, got {type(s)}")
    return summaries


def _check_radii(radii: Sequence[float]) -> list[float]:
    values = [float(r) for r in radii]
    if any(math.isnan(r) or r < 0 for r in values):
        raise ValueError(f"radii must be >= 0, got {values}")
    return values


def markdown_table(summaries: Sequence[RunSummary], radii: Sequence[float]) -> str:
    """Markdown table, one line per run (columns: ``mrs_jax.tables``).

    Args:
      summaries: runs.
      radii: radii for the certified columns (>= 0).

    Returns:
      The table, ending in a newline.
    """
    return tables.markdown_table(_check_summaries(summaries), _check_radii(radii))


def seconds_table(summaries: Sequence[RunSummary]) -> str:
    """Markdown table of the median seconds per image in each phase
    (``mrs_jax.tables.seconds_table``)."""
    return tables.seconds_table(_check_summaries(summaries))


def plot_curves(
    summaries: Sequence[RunSummary], path_png: str | os.PathLike, *, log_x: bool = False
) -> None:
    """(Localised) certified R-accuracy curves of several runs, written as PNG.

    Marker lines at s*sqrt(C) (true unrestricted radius, dotted) and s^2 (the
    paper's threshold, dashed) for every (s, C) among the runs; their labels
    overlap neither each other nor the legend (`mrs_jax.plots`). The radius axis
    runs from 0 past every marker and certified radius; `log_x` switches to a
    symlog axis for widely spread radii.

    Args:
      summaries: runs, e.g. one per sigma.
      path_png: output file.
      log_x: symlog radius axis (linear below 1).
    """
    plots.plot_curves(_check_summaries(summaries), path_png, log_x=log_x)


def curve_radii(summaries: Sequence[RunSummary]) -> list[float]:
    """Default CSV radii: 101 evenly spaced over the plot's axis, plus the markers."""
    return plots.curve_radii(_check_summaries(summaries))


def write_curves_csv(
    summaries: Sequence[RunSummary],
    path_csv: str | os.PathLike,
    radii: Sequence[float] | None = None,
) -> None:
    """Writes (localised) certified R-accuracy curves as long-format CSV.

    Columns: run, mode, sigma, size, channels, radius, certified_accuracy (a
    fraction in [0, 1]), measure ("localised certified" or "certified"); one
    line per run and radius.

    Args:
      summaries: runs.
      path_csv: output file.
      radii: radii to tabulate; default `curve_radii(summaries)`.
    """
    summaries = _check_summaries(summaries)
    radii = curve_radii(summaries) if radii is None else _check_radii(radii)
    plots.write_curves_csv(summaries, path_csv, radii)


def summary_record(s: RunSummary, radii: Sequence[float]) -> dict[str, Any]:
    """One run's entry of summary.json.

    The summary's fields (without per-row radii; with the target-radius ones),
    `partial`, `certified_meaning`, `certificate` (what it covers: "localised",
    "fixed mask" or "every patch position"), and the accuracies at `radii` and
    at the markers under the key "localised_certified" (practical, adaptive and
    clean runs) or "certified".
    """
    record = dataclasses.asdict(s)
    del record["counted_radii"]
    record["partial"] = s.partial
    key = "localised_certified" if s.localised else "certified"
    record["certified_meaning"] = certified_name([s])
    record["certificate"] = s.certificate
    record[key] = {
        f"{r:g}": float(a)
        for r, a in zip(radii, s.certified_accuracy(radii), strict=True)
    }
    record["markers"] = {
        name: {"radius": r, key: float(s.certified_accuracy([r])[0])}
        for name, r in s.markers.items()
    }
    return record
