"""Accuracy metrics over certification result rows (paper Section 4, spec s. 6).

A result row is a dict for one test image; its fields are described once, in
``mrs_jax.core.ROW_FIELDS``. What these metrics read, and how:

- `label` (int >= 0): true class.
- `prediction` (int, -1 = abstain): the defended prediction (on x_adv for the
  practical mode, on the clean image for the centre / Grad-CAM modes).
- `radius` (float >= 0): certified l2 radius of `prediction` (0 on abstain).
  None only with `certificate == "every_patch_position"` (PatchCleanser's
  double masking, `mrs_jax.pipeline`): that certificate is not an l2 radius but
  holds for every patch position and content, so a certified, correct row
  counts at every R (its certified accuracy is the same at every radius).
- `certificate` (str, optional): "every_patch_position" for PatchCleanser rows.
- `covered` (bool, or None / absent): whether the smoothing mask contains the whole
  attack patch. None or absent means the mode has no patch (centre / Grad-CAM).
  Given `mode="practical"` or `"adaptive"` (the attacked modes), every row
  must carry it as a bool: a row without it is refused, not counted as covered.
- `certified` (bool): CERTIFY ran and returned `prediction`. Rows written before
  this field existed say so by `p_lower` (None when CERTIFY did not run); a row
  with neither cannot count as certified and is refused.
- `clean_prediction` (int, optional): the pipeline's prediction on the clean image,
  for rows whose `prediction` is on an attacked image.
- `localization` ("located", "no_change" or "multiple_regions", optional): the
  localisation outcome on the image `prediction` is for.
- `base_clean_prediction`, `undefended_adv_prediction` (int, optional): the base
  classifier's own prediction, clean and under attack (no defence).

- `certified_at_target` (bool, optional), `num_samples` (int, or None where
  CERTIFY did not run): rows certified at a target radius with `certify_at`
  (`mrs_jax.target_radius`); read by :func:`target_accuracy` and
  :func:`mean_num_samples`.

Other fields (`index`, `p_lower`, `abstain_reason`, ...) are carried but not read.
Abstentions (prediction -1) count as wrong everywhere, since labels are >= 0.

Rows written by mrs-jax before the defence certified on `no_change` carried the
*base* classifier's label there (abstain reason "no_change", no `localization`
field): they are refused, since counting them would report the base model's
accuracy as the defence's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mrs_jax.core import (
    ABSTAIN,
    ATTACKED_MODES,
    EVERY_PATCH_POSITION,
    LOCALIZATION_OUTCOMES,
    MODES,
)

__all__ = ["ABSTAIN", "ATTACKED_MODES", "MODES"]  # re-exported by the face


def _rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: accuracy over no images is undefined")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
        legacy = "no_change" in (
            row.get("abstain_reason"),
            row.get("clean_abstain_reason"),
        )
        if legacy and "localization" not in row:
            raise ValueError(
                f"rows[{i}] was written by an older mrs-jax: on 'no_change' it "
                "holds the base classifier's label, not the defence's; certify "
                "again into a new run directory"
            )
    return rows


def _certified(row: Mapping[str, Any], i: int) -> bool:
    """Whether CERTIFY ran on this row and returned its `prediction`."""
    if "certified" in row:
        value = row["certified"]
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"rows[{i}]['certified'] must be a bool, got {value!r}")
        return bool(value)
    if "p_lower" in row:  # rows written before the `certified` field
        return row["p_lower"] is not None and row.get("prediction") != ABSTAIN
    raise ValueError(
        f"rows[{i}] has neither 'certified' nor 'p_lower': cannot tell whether "
        "CERTIFY ran"
    )


def _int_field(row: Mapping[str, Any], field: str, i: int) -> int:
    if field not in row:
        raise ValueError(f"rows[{i}] has no '{field}' field")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"rows[{i}]['{field}'] must be an int, got {value!r}")
    return int(value)


def _label(row: Mapping[str, Any], i: int) -> int:
    label = _int_field(row, "label", i)
    if label < 0:
        raise ValueError(f"rows[{i}]['label'] must be >= 0, got {label}")
    return label


def _radius(row: Mapping[str, Any], i: int) -> float:
    """The row's radius; +inf for a certificate over every patch position."""
    if "radius" not in row:
        raise ValueError(f"rows[{i}] has no 'radius' field")
    radius = row["radius"]
    if radius is None and row.get("certificate") == EVERY_PATCH_POSITION:
        return math.inf
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.number)):
        raise TypeError(f"rows[{i}]['radius'] must be a number, got {radius!r}")
    if math.isnan(radius):
        raise ValueError(f"rows[{i}]['radius'] is NaN")
    return float(radius)


def _check_mode(mode: str | None) -> bool:
    """Whether rows of ``mode`` must say ``covered`` (the attacked modes)."""
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"mode must be a str or None, got {type(mode).__name__}")
    return mode in ATTACKED_MODES


def _covered_ok(row: Mapping[str, Any], i: int, attacked: bool = False) -> bool:
    """True unless the row has a patch that the mask misses.

    With ``attacked`` (a practical or adaptive row) the row must say whether
    its mask covers the patch; a row without ``covered`` is refused.
    """
    covered = row.get("covered")
    if covered is None:
        if attacked:
            raise ValueError(
                f"rows[{i}] has no 'covered' (bool) field: a row of an attacked "
                "mode must say whether its mask covers the patch"
            )
        return True
    if not isinstance(covered, (bool, np.bool_)):
        raise TypeError(f"rows[{i}]['covered'] must be a bool or None, got {covered!r}")
    return bool(covered)


def empirical_accuracy(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of rows with prediction == label (radius and coverage ignored).

    Args:
      rows: result rows (see module docstring).

    Returns:
      Accuracy in [0, 1].
    """
    rows = _rows(rows)
    correct = [
        _int_field(r, "prediction", i) == _label(r, i) for i, r in enumerate(rows)
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
    rows = _rows(rows)
    has_clean = ["clean_prediction" in r for r in rows]
    if any(has_clean) and not all(has_clean):
        missing = has_clean.index(False)
        raise ValueError(
            f"rows[{missing}] has no 'clean_prediction' field while other rows do"
        )
    field = "clean_prediction" if all(has_clean) else "prediction"
    correct = [_int_field(r, field, i) == _label(r, i) for i, r in enumerate(rows)]
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
    attacked = _check_mode(mode)
    rows = _rows(rows)
    radii = np.full(len(rows), -np.inf)
    for i, row in enumerate(rows):
        radius = _radius(row, i)
        if radius < 0:
            raise ValueError(f"rows[{i}]['radius'] must be >= 0, got {radius}")
        correct = _int_field(row, "prediction", i) == _label(row, i)
        covered = _covered_ok(row, i, attacked)
        if correct and _certified(row, i) and covered:
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
    attacked = _check_mode(mode)
    rows = _rows(rows)
    counted = []
    for i, row in enumerate(rows):
        value = row.get("certified_at_target")
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                f"rows[{i}]['certified_at_target'] must be a bool, got {value!r}"
            )
        correct = _int_field(row, "prediction", i) == _label(row, i)
        covered = _covered_ok(row, i, attacked)
        counted.append(bool(value) and correct and covered)
    return float(np.mean(counted))


def mean_num_samples(rows: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean draws per image (n0 included) over rows where CERTIFY ran.

    Args:
      rows: result rows with `num_samples` (None where CERTIFY did not run).

    Returns:
      The mean, or None when CERTIFY ran on no row.
    """
    rows = _rows(rows)
    drawn = []
    for i, row in enumerate(rows):
        value = row.get("num_samples")
        if value is None:
            continue
        drawn.append(_int_field(row, "num_samples", i))
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
    rows = _rows(rows)
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
    rows = _rows(rows)
    correct = [_int_field(r, field, i) == _label(r, i) for i, r in enumerate(rows)]
    return float(np.mean(correct))


def localization_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Share of rows per localisation outcome ("located", "no_change", ...).

    Args:
      rows: result rows that all carry `localization`.

    Returns:
      {outcome: share in [0, 1]} for every outcome in `LOCALIZATION_OUTCOMES`.
    """
    rows = _rows(rows)
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
    rows = _rows(rows)
    covered = []
    for i, row in enumerate(rows):
        if row.get("covered") is None:
            raise ValueError(f"rows[{i}] has no patch ('covered' is None or absent)")
        covered.append(_covered_ok(row, i))
    return float(np.mean(covered))


def attack_won_rate(rows: Iterable[Mapping[str, Any]]) -> float:
    """Share of attacked rows where the attack beat the localiser: the patch
    fooled the undefended classifier (``undefended_adv_prediction != label``)
    and the mask missed it (``covered`` false).

    Localised certified accuracy counts neither these rows nor those where the
    patch failed and the mask sat elsewhere; this rate tells them apart.
    """
    rows = _rows(rows)
    won = []
    for i, row in enumerate(rows):
        if row.get("covered") is None:
            raise ValueError(f"rows[{i}] has no patch ('covered' is None or absent)")
        fooled = _int_field(row, "undefended_adv_prediction", i) != _label(row, i)
        won.append(fooled and not _covered_ok(row, i))
    return float(np.mean(won))


def certified_correct_rate(
    rows: Iterable[Mapping[str, Any]], radius: float
) -> float:
    """Share of rows certified for the true label at radius >= ``radius``,
    wherever the mask lies (coverage ignored): what the smoothed classifier in
    the located mask guarantees for the image the attack produced, not a
    certificate against the patch where the mask misses it."""
    rows = _rows(rows)
    counted = [
        _certified(row, i)
        and _int_field(row, "prediction", i) == _label(row, i)
        and _radius(row, i) >= radius
        for i, row in enumerate(rows)
    ]
    return float(np.mean(counted))


def mask_covers(mask: Any, top_left: Any, size: int) -> bool:
    """Whether the mask contains every pixel of the s x s patch at `top_left`.

    Args:
      mask: [H, W] bool (or 0/1) smoothing mask.
      top_left: (row, column) of the patch, e.g. `patch_attack`'s second output.
      size: patch side s.

    Returns:
      True iff mask[top:top+s, left:left+s] is all True.
    """
    mask_arr = np.asarray(mask)
    if mask_arr.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask_arr.shape}")
    if mask_arr.dtype != np.bool_:
        if not np.all((mask_arr == 0) | (mask_arr == 1)):
            raise ValueError("mask must be boolean or 0/1")
        mask_arr = mask_arr.astype(bool)
    corner = np.asarray(top_left)
    if corner.shape != (2,) or not np.issubdtype(corner.dtype, np.integer):
        raise ValueError(f"top_left must be 2 ints (row, column), got {top_left!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    top, left = int(corner[0]), int(corner[1])
    height, width = mask_arr.shape
    if top < 0 or left < 0 or top + size > height or left + size > width:
        raise ValueError(
            f"patch at top_left={top, left} of size {size} leaves the "
            f"{height}x{width} mask"
        )
    return bool(mask_arr[top : top + size, left : left + size].all())


def radius_markers(size: int, channels: int) -> dict[str, float]:
    """The two reference radii to mark on curves and tables (spec s. 1).

    Args:
      size: patch side s.
      channels: image channels C.

    Returns:
      {"true unrestricted (s*sqrt(C))": s * sqrt(C), the largest l2 change an s x s
      patch can make in [0, 1] units; "paper s^2": s * s, the paper's threshold}.
    """
    for name, value in (("size", size), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return {
        "true unrestricted (s*sqrt(C))": float(size * math.sqrt(channels)),
        "paper s^2": float(size * size),
    }
