"""The patch in pixels: whether a mask covers it, and its l2 reference radii."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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
