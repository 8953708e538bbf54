"""Binary masks over the image plane and the l2 size of what a patch can do.

Masks are ``[H, W]`` bool arrays; a masked pixel is masked in every channel. All
norms are l2 norms in [0, 1] pixel units. A certificate whose radius exceeds
:func:`unrestricted_radius` covers every patch content inside its mask
(``docs/masked_smoothing.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mrs_jax.core import checks as _checks

# A target radius's word for patch_l2_bound(s, C): every content of an s x s patch.
UNRESTRICTED = "unrestricted"


def square_mask(
    image_shape: Sequence[int], top: int, left: int, size: int
) -> np.ndarray:
    """An ``[H, W]`` bool mask that is True on one ``size x size`` square.

    Args:
      image_shape: ``(H, W)`` or ``(H, W, C)``.
      top, left: the square's top-left pixel; the square must lie inside the image.
      size: the square's side in pixels.

    Returns:
      ``[H, W]`` bool array.

    Raises:
      ValueError, TypeError: a bad shape or size, or a square leaving the image.

    Examples:
      >>> from mrs_jax.certification import square_mask
      >>> print(square_mask((4, 4), 1, 1, 2).astype(int))
      [[0 0 0 0]
       [0 1 1 0]
       [0 1 1 0]
       [0 0 0 0]]
    """
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(d, (int, np.integer)) and d > 0 for d in shape
    ):
        raise ValueError(
            f"image_shape must be (H, W) or (H, W, C) of positive ints, got {shape}"
        )
    height, width = int(shape[0]), int(shape[1])
    size = _checks.positive_int(size, "size")
    top = _checks.positive_int(top, "top", minimum=0)
    left = _checks.positive_int(left, "left", minimum=0)
    if size > min(height, width):
        raise ValueError(f"size {size} does not fit in an image of {height}x{width}")
    if top + size > height or left + size > width:
        raise ValueError(
            f"the square at (top={top}, left={left}) of size {size} leaves the "
            f"{height}x{width} image"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def unrestricted_radius(x, mask) -> float:
    """The largest l2 change any perturbation inside ``mask`` can make to ``x``.

    Each masked entry can move to 0 or 1, so the worst case is
    ``sqrt(sum over masked entries of max(x_i, 1 - x_i)^2)``. A certificate whose
    radius exceeds this covers every possible patch inside the mask.

    Args:
      x: ``[H, W, C]`` float image in [0, 1].
      mask: ``[H, W]`` bool or {0, 1}.

    Returns:
      The radius as a Python float.

    Raises:
      ValueError, TypeError: ``x`` not an image in [0, 1], or ``mask`` not an
        ``[H, W]`` bool or {0, 1} array matching it.

    Examples:
      >>> import numpy as np
      >>> from mrs_jax.certification import square_mask, unrestricted_radius
      >>> x = np.full((4, 4, 3), 0.5, np.float32)
      >>> mask = square_mask(x.shape, 1, 1, 2)
      >>> round(unrestricted_radius(x, mask), 4)  # sqrt(2 * 2 * 3 * 0.5 ** 2)
      1.7321
      >>> round(unrestricted_radius(np.zeros_like(x), mask), 4)  # 2 * sqrt(3)
      3.4641
    """
    x = _checks.image(x)
    mask = _checks.mask(mask, x.shape)
    reach = np.maximum(x, 1.0 - x)[mask]
    return float(np.sqrt(np.sum(reach.astype(np.float64) ** 2)))


def patch_l2_bound(size: int, channels: int) -> float:
    """``size * sqrt(channels)``: the largest l2 norm of any ``size x size`` patch.

    This bounds :func:`unrestricted_radius` over all images.

    Args:
      size: the patch side s, >= 1.
      channels: C, >= 1.

    Returns:
      The bound as a Python float.

    Examples:
      >>> from mrs_jax.certification import patch_l2_bound
      >>> round(patch_l2_bound(5, 3), 2), round(patch_l2_bound(32, 3), 1)
      (8.66, 55.4)
    """
    size = _checks.positive_int(size, "size")
    channels = _checks.positive_int(channels, "channels")
    return size * math.sqrt(channels)


def resolve_target(target: float | str | None, patch_size: int, channels: int):
    """A target radius as an l2 radius: None, the number, or ``s * sqrt(C)``
    for :data:`UNRESTRICTED`.

    Args:
      target: None, a radius >= 0, or ``"unrestricted"`` (e.g.
        ``JobConfig.target_radius``, which checks it).
      patch_size: s.
      channels: C.

    Returns:
      None or the radius as a float.
    """
    if target is None:
        return None
    if target == UNRESTRICTED:
        return patch_l2_bound(patch_size, channels)
    return float(target)
