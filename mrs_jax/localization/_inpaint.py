"""Sliding-block inpainting: OpenCV Telea (reference) and a harmonic fill on device.

Localisation hides every s x s block of an image in turn, fills it in, and
classifies the result. ``"telea"`` is OpenCV's Telea on the uint8 image, on host
threads, filled from a crop that gives bit-identical results; ``"harmonic"`` is
the exact discrete Laplace fill of the block from its ring of neighbours, a
precomputed linear map that runs under ``jit`` and ``vmap``
(``docs/localization.md``).

Positions are the top-left corners ``(i, j)`` in pixels of the blocks,
``i = 0, stride, 2 * stride, ... <= H - size`` (likewise j), in row-major order.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax.core import checks as _checks

METHODS = ("telea", "harmonic")

TELEA_RADIUS = 3
# Telea reads known pixels up to its radius from the hole (plus one for gradients);
# twice that is a safe crop margin, and results are bit-identical to the full image.
_TELEA_MARGIN = 2 * TELEA_RADIUS + 2


# --------------------------------------------------------------------------- checks


def check_image(x, name: str = "x") -> np.ndarray:
    """Validates one image and returns it as a float32 numpy array.

    Args:
      x: [H, W, C] float array with values in [0, 1].
      name: argument name used in error messages.

    Returns:
      [H, W, C] float32 numpy array.

    Raises:
      TypeError: if x is not a real floating array.
      ValueError: on a wrong rank, an empty axis, NaN/inf or values outside [0, 1].
    """
    return _checks.image(x, name)


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """Checks that value is an int in [low, high] and returns it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


def check_method(method) -> str:
    """Checks the inpainting method name."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_block(shape: Sequence[int], size, stride) -> tuple[int, int]:
    """Validates size and stride against an image shape [H, W, C]."""
    height, width = int(shape[0]), int(shape[1])
    size = check_int(size, "size", 1)
    if size > min(height, width):
        raise ValueError(f"size={size} is larger than the image ({height} x {width})")
    stride = check_int(stride, "stride", 1)
    return size, stride


def grid_shape(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Number of block positions (rows, cols) for an image and block."""
    return (height - size) // stride + 1, (width - size) // stride + 1


def block_positions(height: int, width: int, size: int, stride: int = 1) -> np.ndarray:
    """Top-left pixel positions of all blocks, row-major.

    Returns:
      [rows * cols, 2] int32 array of (i, j), i = row_index * stride.
    """
    rows, cols = grid_shape(height, width, size, stride)
    ii, jj = np.meshgrid(
        np.arange(rows) * stride, np.arange(cols) * stride, indexing="ij"
    )
    return np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.int32)


# --------------------------------------------------------------------------- Telea


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[H, W, C] float in [0, 1] -> uint8 by rounding x * 255 (Telea's input)."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def telea_block(x_uint8: np.ndarray, top_left: Sequence[int], size: int) -> np.ndarray:
    """Telea-inpaints one s x s block and returns only the filled block.

    Args:
      x_uint8: [H, W, C] uint8 image, C in {1, 3} (OpenCV's limit for inpaint).
      top_left: (i, j) pixel position of the block.
      size: block side s.

    Returns:
      [s, s, C] uint8, identical to the block of
      ``cv2.inpaint(x_uint8, mask, 3, cv2.INPAINT_TELEA)`` on the whole image.
    """
    i, j = int(top_left[0]), int(top_left[1])
    height, width = x_uint8.shape[:2]
    r0, r1 = max(0, i - _TELEA_MARGIN), min(height, i + size + _TELEA_MARGIN)
    c0, c1 = max(0, j - _TELEA_MARGIN), min(width, j + size + _TELEA_MARGIN)
    crop = np.ascontiguousarray(x_uint8[r0:r1, c0:c1])
    mask = np.zeros(crop.shape[:2], np.uint8)
    mask[i - r0 : i - r0 + size, j - c0 : j - c0 + size] = 1
    import cv2  # OpenCV is imported on first use, not with the package

    out = cv2.inpaint(crop, mask, TELEA_RADIUS, cv2.INPAINT_TELEA)
    out = out.reshape(crop.shape)
    return out[i - r0 : i - r0 + size, j - c0 : j - c0 + size]


def telea_blocks(
    x_uint8: np.ndarray,
    positions: np.ndarray,
    size: int,
    executor: concurrent.futures.Executor | None = None,
) -> np.ndarray:
    """Telea-fills many blocks, spread over threads. Returns [P, s, s, C] uint8."""
    if x_uint8.shape[-1] not in (1, 3):
        raise ValueError(
            f"method='telea' needs 1 or 3 channels (OpenCV), got {x_uint8.shape[-1]}"
        )
    fill = functools.partial(telea_block, x_uint8, size=size)
    if executor is None:
        blocks = [fill(p) for p in positions]
    else:
        blocks = list(executor.map(fill, positions))
    channels = x_uint8.shape[-1]
    if not blocks:
        return np.zeros((0, size, size, channels), np.uint8)
    return np.stack(blocks).reshape(len(blocks), size, size, channels)


def telea_block_chunks(
    x_uint8: np.ndarray,
    positions: np.ndarray,
    size: int,
    chunk: int,
    workers: int | None = None,
) -> Iterator[np.ndarray]:
    """Yields Telea-filled blocks chunk by chunk, one chunk computed ahead.

    While the caller works on chunk k (e.g. dispatches its classification to the
    device), the thread pool is already filling chunk k + 1.

    Yields:
      [n, s, s, C] float32 blocks in [0, 1], n <= chunk, in order of positions.
    """
    workers = workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        starts = range(0, len(positions), chunk)

        def submit(start):
            part = positions[start : start + chunk]
            # One task per worker slice keeps the per-task Python overhead small.
            slices = np.array_split(part, min(workers, len(part)))
            return [
                pool.submit(telea_blocks, x_uint8, s, size) for s in slices if len(s)
            ]

        pending = submit(0) if len(positions) else None
        for k, _ in enumerate(starts):
            current = pending
            nxt = (k + 1) * chunk
            pending = submit(nxt) if nxt < len(positions) else None
            blocks = np.concatenate([f.result() for f in current])
            yield blocks.astype(np.float32) / np.float32(255.0)


# ------------------------------------------------------------------------ harmonic


@functools.lru_cache(maxsize=16)
def harmonic_operators(size: int) -> np.ndarray:
    """Linear maps from the boundary ring of an s x s block to its harmonic fill.

    The ring holds 4 s pixels: top row, bottom row, left column, right column (the
    4-neighbours of the block; corners are not used by the 5-point Laplacian). Case
    ``k`` has bit 0/1/2/3 set when the top/bottom/left/right side lies inside the
    image; a missing side gets a zero-flux (Neumann) condition. The discrete Laplace
    equation is solved exactly once per case.

    Returns:
      [16, s * s, 4 * s] float32. Case 0 (no side available, block == image) maps
      everything to zero; the caller fills that case with 0.5.
    """
    s = size
    n = s * s
    ops = np.zeros((16, n, 4 * s), np.float64)

    def ring_index(side: int, t: int) -> int:
        return side * s + t

    for case in range(1, 16):
        avail = [(case >> bit) & 1 for bit in range(4)]
        lap = np.zeros((n, n))
        rhs = np.zeros((n, 4 * s))
        for a in range(s):
            for b in range(s):
                k = a * s + b
                for da, db, side, t in (
                    (-1, 0, 0, b),
                    (1, 0, 1, b),
                    (0, -1, 2, a),
                    (0, 1, 3, a),
                ):
                    na, nb = a + da, b + db
                    if 0 <= na < s and 0 <= nb < s:
                        lap[k, k] += 1.0
                        lap[k, na * s + nb] -= 1.0
                    elif avail[side]:
                        lap[k, k] += 1.0
                        rhs[k, ring_index(side, t)] += 1.0
        ops[case] = np.linalg.solve(lap, rhs)
    return ops.astype(np.float32)


def harmonic_block(x: jax.Array, top_left: jax.Array, size: int) -> jax.Array:
    """Harmonic fill of one s x s block; jit- and vmap-friendly.

    Args:
      x: [H, W, C] float32 image in [0, 1].
      top_left: [2] int32 (i, j), 0 <= i <= H - s, 0 <= j <= W - s.
      size: static block side s.

    Returns:
      [s, s, C] float32 fill, in [0, 1] (a harmonic function obeys the maximum
      principle, so it stays within the range of its boundary values).
    """
    height, width, channels = x.shape
    s = size
    i, j = top_left[0], top_left[1]
    padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
    window = jax.lax.dynamic_slice(padded, (i, j, 0), (s + 2, s + 2, channels))
    ring = jnp.concatenate(
        [window[0, 1:-1], window[-1, 1:-1], window[1:-1, 0], window[1:-1, -1]]
    )  # [4 s, C]
    case = (
        (i > 0).astype(jnp.int32)
        + 2 * (i + s < height).astype(jnp.int32)
        + 4 * (j > 0).astype(jnp.int32)
        + 8 * (j + s < width).astype(jnp.int32)
    )
    ops = jnp.asarray(harmonic_operators(s))
    # All 16 cases cost 16 small matmuls, far below one classifier call, and avoid
    # gathering a [s^2, 4 s] matrix per position under vmap.
    fills = jnp.einsum("qkr,rc->qkc", ops, ring, precision=jax.lax.Precision.HIGHEST)
    fill = jnp.where(case == 0, 0.5, fills[case])
    return jnp.clip(fill, 0.0, 1.0).reshape(s, s, channels)


def paste_block(x: jax.Array, block: jax.Array, top_left: jax.Array) -> jax.Array:
    """[H, W, C] image with the [s, s, C] block written at top_left=(i, j)."""
    return jax.lax.dynamic_update_slice(
        x, block.astype(x.dtype), (top_left[0], top_left[1], 0)
    )


def harmonic_variant(x: jax.Array, top_left: jax.Array, size: int) -> jax.Array:
    """[H, W, C] image with the block at top_left replaced by its harmonic fill."""
    return paste_block(x, harmonic_block(x, top_left, size), top_left)


@functools.partial(jax.jit, static_argnames="size")
def _harmonic_variants(x, positions, size):
    return jax.vmap(harmonic_variant, in_axes=(None, 0, None))(x, positions, size)


# ---------------------------------------------------------------------- public API


def sliding_inpaint(
    x, size: int, *, stride: int = 1, method: str = "telea"
) -> tuple[jax.Array, np.ndarray]:
    """All inpainted variants of an image, one per s x s block position.

    Materialises [P, H, W, C]: meant for small images and inspection. Localisation
    streams blocks instead (see ``prediction_map``).

    Args:
      x: [H, W, C] float32 image in [0, 1]. Telea needs C in {1, 3}.
      size: block side s, 1 <= s <= min(H, W).
      stride: step between block positions in pixels, >= 1.
      method: "telea" (OpenCV, on the image rounded to uint8; the variants are that
        uint8 image / 255 with the block filled) or "harmonic" (on device, on x
        itself).

    Returns:
      variants: [P, H, W, C] float32 in [0, 1], P = rows * cols, row-major.
      positions: [P, 2] int32 top-left (i, j) pixel positions of the blocks.
    """
    arr = check_image(x)
    size, stride = check_block(arr.shape, size, stride)
    method = check_method(method)
    positions = block_positions(arr.shape[0], arr.shape[1], size, stride)
    if method == "harmonic":
        variants = _harmonic_variants(jnp.asarray(arr), jnp.asarray(positions), size)
        return variants, positions
    x_uint8 = to_uint8(arr)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        blocks = telea_blocks(x_uint8, positions, size, pool)
    variants = np.broadcast_to(x_uint8, (len(positions),) + x_uint8.shape).copy()
    idx = np.arange(len(positions))
    rows = positions[:, 0, None] + np.arange(size)  # [P, s]
    cols = positions[:, 1, None] + np.arange(size)
    variants[idx[:, None, None], rows[:, :, None], cols[:, None, :]] = blocks
    return jnp.asarray(variants.astype(np.float32) / np.float32(255.0)), positions
