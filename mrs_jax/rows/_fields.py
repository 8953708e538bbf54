"""How the metrics read a result row's fields, each checked as it is read.

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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mrs_jax.core import ABSTAIN, ATTACKED_MODES, EVERY_PATCH_POSITION


def rows_list(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
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


def certified(row: Mapping[str, Any], i: int) -> bool:
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


def int_field(row: Mapping[str, Any], field: str, i: int) -> int:
    if field not in row:
        raise ValueError(f"rows[{i}] has no '{field}' field")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"rows[{i}]['{field}'] must be an int, got {value!r}")
    return int(value)


def label_of(row: Mapping[str, Any], i: int) -> int:
    label = int_field(row, "label", i)
    if label < 0:
        raise ValueError(f"rows[{i}]['label'] must be >= 0, got {label}")
    return label


def radius_of(row: Mapping[str, Any], i: int) -> float:
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


def check_mode(mode: str | None) -> bool:
    """Whether rows of ``mode`` must say ``covered`` (the attacked modes)."""
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"mode must be a str or None, got {type(mode).__name__}")
    return mode in ATTACKED_MODES


def covered_ok(row: Mapping[str, Any], i: int, attacked: bool = False) -> bool:
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
