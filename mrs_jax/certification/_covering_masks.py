"""PatchCleanser's R-covering mask set: every ``s x s`` patch lies inside some
mask (Xiang et al., USENIX Security 2022; ``docs/patchcleanser.md``), and the
check of a mask set a caller passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrs_jax.core import checks as _checks

# --------------------------------------------------------------------------- masks


def patchcleanser_masks(image_hw: Sequence[int], patch_size: int, k: int) -> np.ndarray:
    """The R-covering mask set: every ``s x s`` patch lies inside some mask.

    Along each axis of length ``N`` with ``L = N - s + 1`` patch positions, the
    stride is ``ceil(L / k)``, the mask width ``s + stride - 1`` and the mask
    positions ``0, stride, 2 * stride, ...`` up to ``N - width``, plus one flush
    with the far border when the strides do not land there (the paper's
    reference code). That is ``ceil(L / stride)`` positions per axis: ``k``
    whenever ``(k - 1) * stride < L`` (e.g. ``N = 32, s = 5, k = 6``: width 9 at
    0, 5, 10, 15, 20, 23), fewer otherwise (``k`` positions would then repeat
    one or overrun the border).

    Args:
      image_hw: ``(H, W)``, or ``(H, W, C)`` whose channels are ignored.
      patch_size: the patch side ``s``, ``1 <= s <= min(H, W)``.
      k: masks per axis, >= 1.

    Returns:
      ``[M, H, W]`` bool, True where a mask hides the image, one rectangle per
      mask, row-major over (row position, column position); ``M = k * k`` in the
      usual case above.

    Raises:
      ValueError, TypeError: a bad shape, ``patch_size`` or ``k``.

    Examples:
      >>> from mrs_jax.certification import patchcleanser_masks
      >>> patchcleanser_masks((32, 32), 5, 6).shape
      (36, 32, 32)
      >>> masks = patchcleanser_masks((6, 6), 2, 2)  # width 4 at rows/cols 0, 2
      >>> print(masks[3].astype(int))
      [[0 0 0 0 0 0]
       [0 0 0 0 0 0]
       [0 0 1 1 1 1]
       [0 0 1 1 1 1]
       [0 0 1 1 1 1]
       [0 0 1 1 1 1]]
    """
    shape = tuple(image_hw)
    if len(shape) not in (2, 3) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
        for d in shape
    ):
        raise ValueError(
            f"image_hw must be (H, W) or (H, W, C) of positive ints, got {shape}"
        )
    height, width = int(shape[0]), int(shape[1])
    size = _checks.positive_int(patch_size, "patch_size")
    k = _checks.positive_int(k, "k")
    if size > min(height, width):
        raise ValueError(
            f"patch_size {size} does not fit in an image of {height}x{width}"
        )
    in_rows = _axis_spans(height, size, k)  # [R, H]
    in_cols = _axis_spans(width, size, k)  # [C, W]
    masks = in_rows[:, None, :, None] & in_cols[None, :, None, :]
    return masks.reshape(-1, height, width)


def _axis_spans(length: int, size: int, k: int) -> np.ndarray:
    """``[P, length]`` bool: the pixels each mask position covers along one axis."""
    positions = length - size + 1
    stride = math.ceil(positions / k)
    width = size + stride - 1  # <= length, as stride <= positions
    starts = list(range(0, length - width + 1, stride))
    if starts[-1] != length - width:
        starts.append(length - width)
    pixel = np.arange(length)[None, :]
    starts = np.asarray(starts)[:, None]
    return (pixel >= starts) & (pixel < starts + width)


def check_masks(masks: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    if masks is None:
        raise TypeError("masks must be an [M, H, W] array, got None")
    arr = np.asarray(masks)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] != tuple(image_shape[:2]):
        raise ValueError(
            f"masks must have shape [M, H, W] with M >= 1 and [H, W] = "
            f"{tuple(image_shape[:2])} to match the image, got {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"masks must be bool or 0/1 numbers, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("masks must hold only 0 and 1 (or bools)")
    return arr.astype(bool)
