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
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import mrs_jax.report._tables as tables
from mrs_jax import rows as metrics, rows as row_files
from mrs_jax.core import ATTACKED_MODES, MODES
from mrs_jax.report._outputs import (
    curve_radii as curve_radii,
    markdown_table as markdown_table,
    plot_curves as plot_curves,
    seconds_table as seconds_table,
    summary_record as summary_record,
    write_curves_csv as write_curves_csv,
)
from mrs_jax.report._summary import RunSummary

# The job's modes (``mrs_jax.job.MODES``); "clean" rows carry no patch, so their
# certified accuracy, like center/gradcam, needs no coverage.
_ATTACKED = ATTACKED_MODES


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
