"""Accuracy metrics over certification result rows (paper Section 4, spec s. 6).

The fields they read, and how, are described in ``_fields.py``; every field once
in ``mrs_jax.core.ROW_FIELDS``. Abstentions (prediction -1) count as wrong
everywhere, since labels are >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mrs_jax.core import (
    ABSTAIN,
    ATTACKED_MODES,
    LOCALIZATION_OUTCOMES,
    MODES,
)
from mrs_jax.rows._fields import (
    certified,
    check_mode,
    covered_ok,
    int_field,
    label_of,
    radius_of,
    rows_list,
)
from mrs_jax.rows._patch import (
    mask_covers as mask_covers,
    radius_markers as radius_markers,
)

__all__ = ["ABSTAIN", "ATTACKED_MODES", "MODES"]  # re-exported by the face


def empirical_accuracy(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of rows with prediction == label (radius and coverage ignored).

    Args:
      rows: result rows (see module docstring).

    Returns:
      Accuracy in [0, 1].
    """
    rows = rows_list(rows)
    correct = [
        int_field(r, "prediction", i) == label_of(r, i) for i, r in enumerate(rows)
    ]
    return float(np.mean(correct))


def clean_accuracy(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of rows whose clean-image prediction equals the label.

    Uses `clean_prediction` when the rows carry it (practical mode: `prediction` is on
    x_adv) and `prediction` otherwise (centre / Grad-CAM modes certify the clean
    image). Mixed rows are rejected, so an attacked prediction is never counted as a
    clean one.

    Args:
      rows: result rows.

    Returns:
      Accuracy in [0, 1].
    """
    rows = rows_list(rows)
    has_clean = ["clean_prediction" in r for r in rows]
    if any(has_clean) and not all(has_clean):
        missing = has_clean.index(False)
        raise ValueError(
            f"rows[{missing}] has no 'clean_prediction' field while other rows do"
        )
    field = "clean_prediction" if all(has_clean) else "prediction"
    correct = [int_field(r, field, i) == label_of(r, i) for i, r in enumerate(rows)]
    return float(np.mean(correct))


def certified_radii(
    rows: Iterable[Mapping[str, Any]], *, mode: str | None = None
) -> np.ndarray:
    """Per-row radius that counts towards certified accuracy, -inf where none does.

    A row counts up to its radius when CERTIFY ran and returned its prediction
    (`certified`), prediction == label and, where the row has a patch (`covered`
    not None), the mask covers it; otherwise it never counts. So
    `certified_accuracy(rows, R) == mean(certified_radii(rows) >= R)`.

    Args:
      rows: result rows.
      mode: the job's mode, if known; "practical" and "adaptive" rows must
        each carry `covered` (a bool).

    Returns:
      [N] float64.

    Raises:
      ValueError: a malformed row, or an attacked-mode row without `covered`.
    """
    attacked = check_mode(mode)
    rows = rows_list(rows)
    radii = np.full(len(rows), -np.inf)
    for i, row in enumerate(rows):
        radius = radius_of(row, i)
        if radius < 0:
            raise ValueError(f"rows[{i}]['radius'] must be >= 0, got {radius}")
        correct = int_field(row, "prediction", i) == label_of(row, i)
        covered = covered_ok(row, i, attacked)
        if correct and certified(row, i) and covered:
            radii[i] = radius
    return radii


def certified_accuracy(
    rows: Iterable[Mapping[str, Any]], radius: float, *, mode: str | None = None
) -> float:
    """Localised certified R-accuracy (spec s. 6) at R = `radius`.

    Share of rows where CERTIFY returned the label with radius >= R, and (where the
    row has a patch) a mask containing the whole patch. It is conditional on the
    localisation of the attack actually run, not a worst case over all patch
    positions. For centre / Grad-CAM rows (`covered` None) coverage is not required.

    Args:
      rows: result rows.
      radius: R >= 0, l2 in [0, 1] pixel units.
      mode: the job's mode, if known (see :func:`certified_radii`).

    Returns:
      Accuracy in [0, 1].
    """
    return float(accuracy_curve(rows, [radius], mode=mode)[0])


def accuracy_curve(
    rows: Iterable[Mapping[str, Any]],
    radii: Sequence[float],
    *,
    mode: str | None = None,
) -> np.ndarray:
    """Certified R-accuracy at each R in `radii`.

    Args:
      rows: result rows.
      radii: [M] radii >= 0.
      mode: the job's mode, if known (see :func:`certified_radii`).

    Returns:
      [M] float64 accuracies in [0, 1].
    """
    grid = np.asarray(radii, dtype=np.float64)
    if grid.ndim != 1:
        raise ValueError(f"radii must be 1-D, got shape {grid.shape}")
    if np.any(np.isnan(grid)) or np.any(grid < 0):
        raise ValueError(f"radii must be >= 0, got {grid}")
    counted = certified_radii(rows, mode=mode)
    return (counted[None, :] >= grid[:, None]).mean(axis=1)


def target_accuracy(
    rows: Iterable[Mapping[str, Any]], *, mode: str | None = None
) -> float:
    """Share of rows certified at their target radius for the true label.

    A row counts when `certified_at_target`, prediction == label and, where
    the row has a patch, the mask covers it (as :func:`certified_accuracy`).

    Args:
      rows: result rows that all carry `certified_at_target`.
      mode: the job's mode, if known (see :func:`certified_radii`).

    Returns:
      Accuracy in [0, 1].
    """
    attacked = check_mode(mode)
    rows = rows_list(rows)
    counted = []
    for i, row in enumerate(rows):
        value = row.get("certified_at_target")
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"rows[{i}]['certified_at_target'] must be a bool, got {value!r}"
            )
        correct = int_field(row, "prediction", i) == label_of(row, i)
        covered = covered_ok(row, i, attacked)
        counted.append(bool(value) and correct and covered)
    return float(np.mean(counted))


def mean_num_samples(rows: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean draws per image (n0 included) over rows where CERTIFY ran.

    Args:
      rows: result rows with `num_samples` (None where CERTIFY did not run).

    Returns:
      The mean, or None when CERTIFY ran on no row.
    """
    rows = rows_list(rows)
    drawn = []
    for i, row in enumerate(rows):
        value = row.get("num_samples")
        if value is None:
            continue
        drawn.append(int_field(row, "num_samples", i))
    return float(np.mean(drawn)) if drawn else None


def seconds_per_image(rows: Iterable[Mapping[str, Any]]) -> dict[str, float] | None:
    """Median wall-clock seconds per image, per phase and in all.

    The median, not the mean: the first image of every process (a run resumed
    three times has three) also pays for compiling, which says nothing about
    the steady rate.

    Args:
      rows: result rows; ``seconds`` maps each phase the job timed ("attack",
        "localize", "certify", "clean", "patchcleanser", ...) to seconds.

    Returns:
      ``{phase: median over the rows that timed it, ..., "total": median of
      each row's sum}``, or None when no row carries ``seconds``.
    """
    rows = rows_list(rows)
    per_phase: dict[str, list[float]] = {}
    totals = []
    for i, row in enumerate(rows):
        timed = row.get("seconds")
        if timed is None:
            continue
        if not isinstance(timed, Mapping):
            raise ValueError(f"row {i}: 'seconds' must be an object, got {timed!r}")
        total = 0.0
        for phase, value in timed.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"row {i}: seconds[{phase!r}] must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"row {i}: seconds[{phase!r}] must be >= 0")
            per_phase.setdefault(str(phase), []).append(float(value))
            total += float(value)
        totals.append(total)
    if not totals:
        return None
    medians = {phase: float(np.median(v)) for phase, v in per_phase.items()}
    return medians | {"total": float(np.median(totals))}


def base_accuracy(rows: Iterable[Mapping[str, Any]], field: str) -> float:
    """Accuracy of the base classifier alone (no defence) from one row field.

    Args:
      rows: result rows.
      field: "base_clean_prediction" (clean images) or
        "undefended_adv_prediction" (under attack).

    Returns:
      Accuracy in [0, 1].
    """
    if field not in ("base_clean_prediction", "undefended_adv_prediction"):
        raise ValueError(
            "field must be 'base_clean_prediction' or 'undefended_adv_prediction', "
            f"got {field!r}"
        )
    rows = rows_list(rows)
    correct = [int_field(r, field, i) == label_of(r, i) for i, r in enumerate(rows)]
    return float(np.mean(correct))


def localization_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Share of rows per localisation outcome ("located", "no_change", ...).

    Args:
      rows: result rows that all carry `localization`.

    Returns:
      {outcome: share in [0, 1]} for every outcome in `LOCALIZATION_OUTCOMES`.
    """
    rows = rows_list(rows)
    outcomes = []
    for i, row in enumerate(rows):
        outcome = row.get("localization")
        if outcome not in LOCALIZATION_OUTCOMES:
            raise ValueError(
                f"rows[{i}]['localization'] must be one of {LOCALIZATION_OUTCOMES}, "
                f"got {outcome!r}"
            )
        outcomes.append(outcome)
    return {o: outcomes.count(o) / len(outcomes) for o in LOCALIZATION_OUTCOMES}


def coverage_rate(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of rows whose smoothing mask contains the whole patch (`covered`)."""
    rows = rows_list(rows)
    covered = []
    for i, row in enumerate(rows):
        if row.get("covered") is None:
            raise ValueError(f"rows[{i}] has no patch ('covered' is None or absent)")
        covered.append(covered_ok(row, i))
    return float(np.mean(covered))


def attack_won_rate(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of attacked rows where the attack beat the localiser: the patch
    fooled the undefended classifier (``undefended_adv_prediction != label``)
    and the mask missed it (``covered`` false).

    Localised certified accuracy counts neither these rows nor those where the
    patch failed and the mask sat elsewhere; this rate tells them apart.
    """
    rows = rows_list(rows)
    won = []
    for i, row in enumerate(rows):
        if row.get("covered") is None:
            raise ValueError(f"rows[{i}] has no patch ('covered' is None or absent)")
        fooled = int_field(row, "undefended_adv_prediction", i) != label_of(row, i)
        won.append(fooled and not covered_ok(row, i))
    return float(np.mean(won))


def certified_correct_rate(rows: Iterable[Mapping[str, Any]], radius: float) -> float:
    """Share of rows certified for the true label at radius >= ``radius``,
    wherever the mask lies (coverage ignored): what the smoothed classifier in
    the located mask guarantees for the image the attack produced, not a
    certificate against the patch where the mask misses it."""
    rows = rows_list(rows)
    counted = [
        certified(row, i)
        and int_field(row, "prediction", i) == label_of(row, i)
        and radius_of(row, i) >= radius
        for i, row in enumerate(rows)
    ]
    return float(np.mean(counted))
