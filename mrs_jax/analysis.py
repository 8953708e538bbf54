"""Summaries, tables, curves and CSV from certification run directories.

A run directory holds:

- `run.json`: one JSON object with at least `mode` ("practical", "center",
  "gradcam" or "clean"), `size` (patch side s), `channels` (C) and optionally
  `sigma` and `name` (default: the directory name). Other keys are ignored.
- `rows.jsonl`: one JSON object per image, flushed as the job goes (fields in
  `mrs_jax.metrics`; practical runs add `clean_prediction` and
  `undefended_adv_prediction`, the base classifier's prediction on x_adv without
  the defence). A truncated last line, left by a killed job, is skipped with a
  warning; a bad line anywhere else is an error.

Command line (wired as `python -m certify.analyze`):

    python -m certify.analyze RUN_DIR... [--radii 0 5 10] [--out DIR]

prints a markdown table and, with --out, writes summary.md, summary.json,
curves.csv and curves.png there.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mrs_jax import metrics

# The job's modes (``mrs_jax.job.MODES``); "clean" rows carry no patch, so their
# certified accuracy, like center/gradcam, needs no coverage.
MODES = ("practical", "center", "gradcam", "clean")
_UNRESTRICTED = "true unrestricted (s*sqrt(C))"
_PAPER = "paper s^2"


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Accuracies of one run; all accuracies in [0, 1].

    Attributes:
      name: run name.
      mode: "practical", "center", "gradcam" or "clean".
      size: patch side s.
      channels: image channels C.
      sigma: noise level, or None if run.json has none.
      num_images: rows read.
      clean_accuracy: pipeline accuracy on clean images (`metrics.clean_accuracy`).
      empirical_accuracy: prediction == label (`metrics.empirical_accuracy`).
      undefended_accuracy: base classifier on x_adv without defence; None when the
        rows do not carry `undefended_adv_prediction`.
      abstain_rate: share of rows with prediction -1.
      counted_radii: per row, the radius up to which it counts as certified
        (-inf: never), from `metrics.certified_radii`.
    """

    name: str
    mode: str
    size: int
    channels: int
    sigma: float | None
    num_images: int
    clean_accuracy: float
    empirical_accuracy: float
    undefended_accuracy: float | None
    abstain_rate: float
    counted_radii: tuple[float, ...]

    @property
    def markers(self) -> dict[str, float]:
        """Reference radii s*sqrt(C) and s^2 (`metrics.radius_markers`)."""
        return metrics.radius_markers(self.size, self.channels)

    def certified_accuracy(self, radii: Sequence[float]) -> np.ndarray:
        """[M] localised certified R-accuracy at each radius in `radii`."""
        grid = np.asarray(radii, dtype=np.float64).reshape(-1)
        counted = np.asarray(self.counted_radii, dtype=np.float64)
        return (counted[None, :] >= grid[:, None]).mean(axis=1)


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a JSONL file of result rows, tolerating a truncated last line.

    Args:
      path: file with one JSON object per line; blank lines are skipped.

    Returns:
      The rows, in file order.

    Raises:
      ValueError: a line other than the last is not a JSON object.
    """
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
    rows = []
    for position, (lineno, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if position == len(lines) - 1:
                warnings.warn(
                    f"{path}:{lineno}: skipping truncated last line ({error})",
                    stacklevel=2,
                )
                break
            raise ValueError(f"{path}:{lineno}: not valid JSON: {error}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
        rows.append(row)
    return rows


def _config_value(config: Mapping[str, Any], key: str, kind: type, where: str):
    if key not in config:
        raise ValueError(f"{where}: run.json has no '{key}'")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where}: run.json '{key}' must be {kind}, got {value!r}")
    return value


def summarize(
    config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], name: str
) -> RunSummary:
    """Summary of one run from its config and rows.

    Args:
      config: run.json contents (mode, size, channels, optional sigma).
      rows: result rows.
      name: run name for tables and legends.

    Returns:
      RunSummary.
    """
    mode = _config_value(config, "mode", str, name)
    if mode not in MODES:
        raise ValueError(
            f"{name}: run.json 'mode' must be one of {MODES}, got {mode!r}"
        )
    size = _config_value(config, "size", int, name)
    channels = _config_value(config, "channels", int, name)
    sigma = config.get("sigma")
    if sigma is not None:
        sigma = float(_config_value(config, "sigma", (int, float), name))
    if not rows:
        raise ValueError(f"{name}: no result rows")
    has_undefended = ["undefended_adv_prediction" in r for r in rows]
    if all(has_undefended):
        undefended = metrics.empirical_accuracy(
            [
                {"label": r["label"], "prediction": r["undefended_adv_prediction"]}
                for r in rows
            ]
        )
    elif any(has_undefended):
        raise ValueError(f"{name}: only some rows carry 'undefended_adv_prediction'")
    else:
        undefended = None
    counted = metrics.certified_radii(rows)
    return RunSummary(
        name=name,
        mode=mode,
        size=size,
        channels=channels,
        sigma=sigma,
        num_images=len(rows),
        clean_accuracy=metrics.clean_accuracy(rows),
        empirical_accuracy=metrics.empirical_accuracy(rows),
        undefended_accuracy=undefended,
        abstain_rate=float(np.mean([r["prediction"] == -1 for r in rows])),
        counted_radii=tuple(float(c) for c in counted),
    )


def summarize_run(run_dir: str | os.PathLike) -> RunSummary:
    """Reads `run_dir`/run.json and `run_dir`/rows.jsonl and summarises them.

    Args:
      run_dir: a run directory (see module docstring).

    Returns:
      RunSummary named by run.json's `name`, else the directory name.
    """
    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, "run.json")
    rows_path = os.path.join(run_dir, "rows.jsonl")
    for path in (config_path, rows_path):
        if not os.path.isfile(path):
            raise ValueError(f"run_dir {run_dir!r} has no {os.path.basename(path)}")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    name = str(config.get("name") or os.path.basename(os.path.normpath(run_dir)))
    return summarize(config, read_rows(rows_path), name)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


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
    """Markdown table: one line per run, accuracies in percent.

    Columns: run, mode, sigma, s, images, clean, empirical, undefended under attack,
    abstain, certified R-accuracy at each R in `radii`, then at each run's own
    s*sqrt(C) and s^2 (the radius in brackets).

    Args:
      summaries: runs.
      radii: radii for the certified columns (>= 0).

    Returns:
      The table, ending in a newline.
    """
    summaries = _check_summaries(summaries)
    radii = _check_radii(radii)
    header = ["run", "mode", "sigma", "s", "images", "clean", "empirical"]
    header += ["undefended (attack)", "abstain"]
    header += [f"cert R={r:g}" for r in radii]
    header += ["cert R=s*sqrt(C)", "cert R=s^2"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        sigma = "-" if s.sigma is None else f"{s.sigma:g}"
        cells = [s.name, s.mode, sigma, str(s.size), str(s.num_images)]
        cells += [_percent(s.clean_accuracy), _percent(s.empirical_accuracy)]
        cells += [_percent(s.undefended_accuracy), _percent(s.abstain_rate)]
        cells += [_percent(a) for a in s.certified_accuracy(radii)]
        for radius in (s.markers[_UNRESTRICTED], s.markers[_PAPER]):
            accuracy = s.certified_accuracy([radius])[0]
            cells.append(f"{_percent(accuracy)} ({radius:.3g})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _x_max(summaries: Sequence[RunSummary]) -> float:
    """Right end of the radius axis: past every marker and every counted radius."""
    ends = [max(s.markers.values()) for s in summaries]
    for s in summaries:
        finite = [c for c in s.counted_radii if math.isfinite(c)]
        ends.append(max(finite, default=0.0))
    return 1.08 * max(ends)


def _label(s: RunSummary) -> str:
    sigma = "" if s.sigma is None else f", sigma={s.sigma:g}"
    return (
        f"{s.name} ({s.mode}{sigma}; clean {_percent(s.clean_accuracy)}%, "
        f"empirical {_percent(s.empirical_accuracy)}%)"
    )


def plot_curves(
    summaries: Sequence[RunSummary], path_png: str | os.PathLike, *, log_x: bool = False
) -> None:
    """Certified R-accuracy curves of several runs on one plot, written as PNG.

    Dotted vertical lines mark s*sqrt(C) (true unrestricted radius) and dashed ones
    s^2 (the paper's threshold) for every (s, C) among the runs. The linear radius
    axis runs from 0 past both markers and every certified radius, so both lines are
    always visible; `log_x` switches to a symlog axis for widely spread radii.

    Args:
      summaries: runs, e.g. one per sigma.
      path_png: output file.
      log_x: symlog radius axis (linear below 1).
    """
    summaries = _check_summaries(summaries)
    import matplotlib  # lazily: importing this module must not pick a backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_max = _x_max(summaries)
    grid = np.linspace(0.0, x_max, 2001)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for s in summaries:
            ax.plot(grid, 100 * s.certified_accuracy(grid), label=_label(s))
        for size, channels in sorted({(s.size, s.channels) for s in summaries}):
            markers = metrics.radius_markers(size, channels)
            for key, style in ((_UNRESTRICTED, ":"), (_PAPER, "--")):
                radius = markers[key]
                ax.axvline(radius, color="gray", linestyle=style, linewidth=1)
                ax.annotate(
                    f"{key}\ns={size}, C={channels}: {radius:.3g}",
                    (radius, 100),
                    xytext=(3, -3),
                    textcoords="offset points",
                    rotation=90,
                    va="top",
                    fontsize=7,
                    color="gray",
                )
        if log_x:
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(0.0, x_max)
        ax.set_ylim(0.0, 102.0)
        ax.set_xlabel("l2 radius R ([0, 1] pixel units)")
        ax.set_ylabel("certified R-accuracy (%)")
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path_png, dpi=120)
    finally:
        plt.close(fig)


def curve_radii(summaries: Sequence[RunSummary]) -> list[float]:
    """Default CSV radii: 101 evenly spaced over the plot's axis, plus the markers."""
    summaries = _check_summaries(summaries)
    radii = set(np.linspace(0.0, _x_max(summaries), 101).tolist())
    for s in summaries:
        radii.update(s.markers.values())
    return sorted(radii)


def write_curves_csv(
    summaries: Sequence[RunSummary],
    path_csv: str | os.PathLike,
    radii: Sequence[float] | None = None,
) -> None:
    """Writes certified R-accuracy curves as long-format CSV.

    Columns: run, mode, sigma, size, channels, radius, certified_accuracy (a fraction
    in [0, 1]); one line per run and radius.

    Args:
      summaries: runs.
      path_csv: output file.
      radii: radii to tabulate; default `curve_radii(summaries)`.
    """
    summaries = _check_summaries(summaries)
    radii = curve_radii(summaries) if radii is None else _check_radii(radii)
    with open(path_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["run", "mode", "sigma", "size", "channels", "radius", "certified_accuracy"]
        )
        for s in summaries:
            sigma = "" if s.sigma is None else repr(s.sigma)
            for radius, accuracy in zip(
                radii, s.certified_accuracy(radii), strict=True
            ):
                writer.writerow(
                    [s.name, s.mode, sigma, s.size, s.channels]
                    + [repr(float(radius)), repr(float(accuracy))]
                )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m certify.analyze RUN_DIR... [--radii R...] [--out D]`.

    Returns:
      Exit status 0.
    """
    parser = argparse.ArgumentParser(
        prog="python -m certify.analyze",
        description="Summarise certification runs: table, curves, CSV.",
    )
    parser.add_argument("run_dirs", nargs="+", help="run directories")
    parser.add_argument(
        "--radii",
        type=float,
        nargs="+",
        default=[0.0],
        help="radii for the table's certified columns (s*sqrt(C), s^2 are added)",
    )
    parser.add_argument("--out", help="write summary.md/.json, curves.csv/.png here")
    parser.add_argument("--log-x", action="store_true", help="symlog radius axis")
    args = parser.parse_args(argv)
    summaries = [summarize_run(d) for d in args.run_dirs]
    table = markdown_table(summaries, args.radii)
    print(table, end="")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
            f.write(table)
        with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
            records = []
            for s in summaries:
                record = dataclasses.asdict(s)
                del record["counted_radii"]
                record["certified"] = {
                    f"{r:g}": float(a)
                    for r, a in zip(
                        args.radii, s.certified_accuracy(args.radii), strict=True
                    )
                }
                record["markers"] = {
                    key: {"radius": r, "certified": float(s.certified_accuracy([r])[0])}
                    for key, r in s.markers.items()
                }
                records.append(record)
            json.dump(records, f, indent=2)
        write_curves_csv(summaries, os.path.join(args.out, "curves.csv"))
        plot_curves(summaries, os.path.join(args.out, "curves.png"), log_x=args.log_x)
        print(f"wrote summary.md, summary.json, curves.csv, curves.png to {args.out}")
    return 0
