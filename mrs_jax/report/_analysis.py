"""Summaries, tables, curves and CSV from certification run directories.

A run directory holds:

- `run.json`: one JSON object with at least `mode` (one of `MODES`), `size`
  (patch side s), `channels` (C) and optionally `sigma`, `target_radius` (the
  resolved l2 target of a `certify_at` run; `config.target_radius` says
  whether it was "unrestricted") and `name` (default: the directory name).
  Other keys are ignored.
- `rows.jsonl` and/or shard files `rows-<p>-of-<P>.jsonl`: one JSON object per
  image (fields in `mrs_jax.metrics`). Every row file is read
  (`mrs_jax.rows.all_rows`, read-only): a row in both a shard and the merged
  file counts once; two rows for one index in one file, or two different rows
  for one index, are refused. A truncated last line, left by a killed job, is
  skipped with a warning. A run with fewer rows than run.json's `num_images` is
  marked partial ("3/6 (partial)"). Rows that are not the run's are refused
  (`mrs_jax.rows.check_rows`): a row of another run (its `run_id`), an index
  past `num_images` (more rows than run.json asked for) or an image
  (`dataset_index`) that is not the run's for its index. Rows of practical and
  adaptive runs must each say whether the mask covers the patch (`covered`).

Runs are named by run.json's `name`, else by the shortest path suffix that
tells them apart (`A/run` and `B/run`, not `run` twice: :func:`run_labels`).

"Localised certified" accuracy (practical, adaptive and clean modes) is
conditional on the located mask (spec s. 6); center/gradcam certify a fixed
mask; double_masking (PatchCleanser) certifies against every patch position,
with no radius: its certified accuracy (certified and prediction == label) is
the same at every R; smoothed_double_masking certifies every patch position and
every patch content of l2 norm below its target radius (the row's ``radius``).
Tables, plot axes and summary.json say which.

Command line (`certify/analyze.py`):

    python -m certify.analyze RUN_DIR... [--radii 0 5 10] [--common] [--out DIR]

prints a markdown table (and the seconds per image per phase) and, with --out,
writes summary.md, summary.json, curves.csv and curves.png there. ``--common``
restricts every run to the test images all of them hold (by dataset index), so
that runs of different lengths are compared on the same images.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import mrs_jax.report._plots as plots
import mrs_jax.report._tables as tables
from mrs_jax import rows as metrics, rows as row_files
from mrs_jax.core import ATTACKED_MODES, MODES
from mrs_jax.report._tables import certified_name

# The job's modes (``mrs_jax.job.MODES``); "clean" rows carry no patch, so their
# certified accuracy, like center/gradcam, needs no coverage.
_ATTACKED = ATTACKED_MODES


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
      expected_images: run.json's `num_images` (None if it has none); fewer
        rows than this make the run partial.
      base_clean_accuracy: the base classifier alone on clean images; None when
        the rows do not carry `base_clean_prediction`.
      localization: share of rows per localisation outcome ("located",
        "no_change", "multiple_regions"), or None for modes without one.
      covered_rate: share of rows whose mask contains the patch (practical,
        adaptive).
      attack_won: attacked modes: share of rows where the patch fooled the
        undefended classifier and the mask missed it (``metrics.attack_won_rate``).
      certified_any_mask: attacked modes: share certified for the true label
        at R = s*sqrt(C) wherever the mask lies (``metrics.certified_correct_rate``).
      target_radius: the l2 target of a ``certify_at`` run, else None.
      unrestricted_target: the target was "unrestricted" (s*sqrt(C)): every
        possible patch inside the mask.
      target_accuracy: share of rows certified at the target for the true
        label (and, with a patch, covering it; ``metrics.target_accuracy``).
      mean_samples: mean draws per image where CERTIFY ran (target runs).
      seconds_per_image: median seconds per image per phase and "total"
        (``metrics.seconds_per_image``), or None when rows carry no timings.
      restricted_to: None, or how many images the rows were restricted to
        (the images every run of a comparison holds: :func:`common_images`).
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
    expected_images: int | None = None
    base_clean_accuracy: float | None = None
    localization: dict[str, float] | None = None
    covered_rate: float | None = None
    attack_won: float | None = None
    certified_any_mask: float | None = None
    target_radius: float | None = None
    unrestricted_target: bool = False
    target_accuracy: float | None = None
    mean_samples: float | None = None
    seconds_per_image: dict[str, float] | None = None
    restricted_to: int | None = None

    @property
    def localised(self) -> bool:
        """Whether its certified accuracy is the localised one (MRS pipeline)."""
        return self.mode in ("practical", "adaptive", "vote_adaptive", "clean")

    @property
    def certificate(self) -> str:
        """What its certificate covers: "localised" (MRS's located mask),
        "fixed mask" (center/gradcam) or "every patch position" (PatchCleanser)."""
        if self.mode in ("double_masking", "drs"):
            return "every patch position"
        if self.mode == "smoothed_double_masking":
            return "every patch position, l2 < R"
        return "localised" if self.localised else "fixed mask"

    @property
    def partial(self) -> bool:
        """Fewer rows than the run was asked for (killed, or shards missing);
        never for a run restricted to the images it shares with others."""
        expected = self.expected_images
        if self.restricted_to is not None:
            return False
        return expected is not None and self.num_images < expected

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
    """Reads one JSONL file of result rows, tolerating a truncated last line.

    Args:
      path: file with one JSON object (with an `index`) per line; blank lines
        are skipped; the file is not modified.

    Returns:
      The rows, in file order (a torn last line left out, with a warning).

    Raises:
      ValueError: a line other than the last is not a JSON object.
    """
    return row_files.read(path, torn_tail="skip")


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

    Raises:
      ValueError: a bad run.json, no rows, duplicated rows, rows that are not
        the run's (``mrs_jax.rows.check_rows``) or malformed rows.
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
    _check_rows(config, rows, name)
    expected = config.get("num_images", (config.get("config") or {}).get("num_images"))
    if expected is not None:
        expected = int(_config_value({"num_images": expected}, "num_images", int, name))
    return RunSummary(
        name=name,
        mode=mode,
        size=size,
        channels=channels,
        sigma=sigma,
        num_images=len(rows),
        clean_accuracy=metrics.clean_accuracy(rows),
        empirical_accuracy=metrics.empirical_accuracy(rows),
        abstain_rate=float(np.mean([r["prediction"] == -1 for r in rows])),
        counted_radii=tuple(float(c) for c in metrics.certified_radii(rows, mode=mode)),
        expected_images=expected,
        seconds_per_image=metrics.seconds_per_image(rows),
        **_attack_fields(rows, name, mode, metrics.radius_markers(size, channels)),
        **_target_fields(config, rows, name, mode),
    )


def _check_rows(config: Mapping[str, Any], rows, name: str) -> None:
    """Some rows, one per index, all of this run's (``rows.check_rows``)."""
    if not rows:
        raise ValueError(f"{name}: no result rows")
    indices = [r.get("index") for r in rows if "index" in r]
    duplicates = sorted({i for i in indices if indices.count(i) > 1})
    if duplicates:
        raise ValueError(f"{name}: several rows for index {duplicates}")
    row_files.check_rows(rows, config, name)


def _attack_fields(rows, name: str, mode: str, markers: dict) -> dict[str, Any]:
    """The undefended classifier, the localisation and, for attacked modes,
    coverage, attack won and certified wherever the mask lies."""
    base = metrics.base_accuracy
    undefended = _optional(rows, "undefended_adv_prediction", name, base)
    fields = {
        "undefended_accuracy": undefended,
        "base_clean_accuracy": _optional(rows, "base_clean_prediction", name, base),
        "localization": _optional(
            rows, "localization", name, metrics.localization_rates
        ),
    }
    if mode in _ATTACKED and all(r.get("covered") is not None for r in rows):
        fields["covered_rate"] = metrics.coverage_rate(rows)
        unrestricted = markers[tables.UNRESTRICTED]
        fields["certified_any_mask"] = metrics.certified_correct_rate(
            rows, unrestricted
        )
        if undefended is not None:
            fields["attack_won"] = metrics.attack_won_rate(rows)
    return fields


def _target_fields(config: Mapping[str, Any], rows, name: str, mode: str):
    """A ``certify_at`` run's target radius, accuracy at it and mean draws."""
    target = config.get("target_radius")
    if target is not None:
        target = float(_config_value(config, "target_radius", (int, float), name))
    at_target = _optional(
        rows,
        "certified_at_target",
        name,
        functools.partial(metrics.target_accuracy, mode=mode),
    )
    if at_target is None and mode == "smoothed_double_masking" and target is not None:
        # Its rows certify at the target radius itself: `certified` is the answer.
        at_target = metrics.certified_accuracy(rows, target, mode=mode)
    return {
        "target_radius": target,
        "unrestricted_target": (config.get("config") or {}).get("target_radius")
        == "unrestricted",
        "target_accuracy": at_target,
        "mean_samples": metrics.mean_num_samples(rows) if target is not None else None,
    }


def _optional(rows, field, name, measure):
    """``measure`` over ``rows`` when all carry ``field``, None when none does."""
    present = [field in r and r[field] is not None for r in rows]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"{name}: only some rows carry '{field}'")
    if measure is metrics.base_accuracy:
        return measure(rows, field)
    return measure(rows)


def summarize_run(
    run_dir: str | os.PathLike,
    images: frozenset[int] | None = None,
    *,
    label: str | None = None,
) -> RunSummary:
    """Reads `run_dir`/run.json and every row file of the run and summarises them.

    Files are only read (a torn last line is skipped with a warning, not cut), so
    a run still in progress can be analysed.

    Args:
      run_dir: a run directory (see module docstring).
      images: None for every row, else only the rows of these images (dataset
        indices: :func:`common_images`); the summary then says
        ``restricted_to``.
      label: the name to use when run.json has none (default: the directory
        name; :func:`summarize_runs` passes the shortest distinct path).

    Returns:
      RunSummary named by run.json's `name`, else `label`, else the directory
      name.

    Raises:
      ValueError: no run.json or no rows, duplicated or conflicting rows, rows
        that are not the run's (every row is checked, ``images`` or not).
    """
    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, "run.json")
    if not os.path.isdir(run_dir):
        raise ValueError(f"run_dir {run_dir!r} is not a directory")
    if not os.path.isfile(config_path):
        raise ValueError(f"run_dir {run_dir!r} has no run.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    if not row_files.row_files(run_dir):
        raise ValueError(f"run_dir {run_dir!r} has no rows.jsonl or shard files")
    label = label or os.path.basename(os.path.normpath(run_dir))
    name = str(config.get("name") or label)
    rows = row_files.all_rows(run_dir, repair_files=False)
    if images is None:
        return summarize(config, rows, name)
    row_files.check_rows(rows, config, name)
    chosen = [r for r in rows if _image_of(r, name) in images]
    if not chosen:
        raise ValueError(f"{name}: none of its rows is among the images asked for")
    summary = summarize(config, chosen, name)
    return dataclasses.replace(summary, restricted_to=len(images))


def run_labels(run_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Each run directory's shortest path suffix that no other one ends in.

    ``["A/run", "B/run", "B/other"]`` -> ``["A/run", "B/run", "other"]``.

    Raises:
      ValueError: ``run_dirs`` is empty or names one directory twice.
    """
    if not run_dirs:
        raise ValueError("run_dirs is empty")
    paths = [os.path.abspath(os.fspath(d)) for d in run_dirs]
    for i, path in enumerate(paths):
        if path in paths[:i]:
            raise ValueError(f"run_dirs names {path} twice")
    parts = [path.strip(os.sep).split(os.sep) for path in paths]
    labels = []
    for i, mine in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i]
        depth = 1
        while depth < len(mine) and any(p[-depth:] == mine[-depth:] for p in others):
            depth += 1
        labels.append("/".join(mine[-depth:]))
    return labels


def summarize_runs(
    run_dirs: Sequence[str | os.PathLike], images: frozenset[int] | None = None
) -> list[RunSummary]:
    """:func:`summarize_run` of each run, named so that no two share a name.

    A run without a run.json `name` is named by :func:`run_labels`; runs whose
    names still collide (the same `name` in two run.json) get their path
    label in brackets.

    Raises:
      ValueError: as :func:`summarize_run` and :func:`run_labels`.
    """
    labels = run_labels(run_dirs)
    summaries = [
        summarize_run(d, images, label=label)
        for d, label in zip(run_dirs, labels, strict=True)
    ]
    names = [s.name for s in summaries]
    return [
        s
        if names.count(s.name) == 1
        else dataclasses.replace(s, name=f"{s.name} ({label})")
        for s, label in zip(summaries, labels, strict=True)
    ]


def common_images(run_dirs: Sequence[str | os.PathLike]) -> frozenset[int]:
    """The images (dataset indices) that every run in ``run_dirs`` has a row for,
    so that runs of different lengths are compared on the same test images.

    Raises:
      ValueError: a row without ``dataset_index``, or no image in common.
    """
    if not run_dirs:
        raise ValueError("run_dirs is empty")
    common: frozenset[int] | None = None
    for run_dir in run_dirs:
        name = os.path.basename(os.path.normpath(os.fspath(run_dir)))
        rows = row_files.all_rows(run_dir, repair_files=False)
        held = frozenset(_image_of(r, name) for r in rows)
        common = held if common is None else common & held
    if not common:
        raise ValueError("the runs have no image in common")
    return common


def _image_of(row: Mapping[str, Any], name: str) -> int:
    value = row.get("dataset_index")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"{name}: row {row.get('index')} has no integer 'dataset_index', so "
            "its image cannot be matched across runs"
        )
    return value


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
