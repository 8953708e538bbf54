"""PatchCleanser double masking (Xiang et al., USENIX Security 2022).

A certified patch defence that holds for every patch position, as a baseline
beside MRS's localised certificates. A set of rectangular masks is chosen so
that every ``s x s`` patch lies inside at least one of them (an R-covering set,
:func:`patchcleanser_masks`). The image is classified with each mask applied
(one-mask predictions) and with each pair of masks applied (two-mask
predictions); masked pixels are replaced by a constant ``fill``.

- Inference (:func:`double_masking`): (1) if all one-mask predictions agree,
  return that label; (2) else, for each mask whose one-mask prediction is a
  minority label (in mask order), return that label if all of its two-mask
  predictions agree with it; (3) else return the one-mask majority label.
- Certification (:func:`double_masking_certify`): if every two-mask prediction
  (all pairs, a mask with itself included) equals ``label``, then
  :func:`double_masking` returns ``label`` on the image with any ``s x s`` patch,
  anywhere, with any content (the paper's Theorem 1). No sampling, no alpha.

Masked images are built, classified and reduced to labels on the device in
chunks of ``batch_size`` pairs, one jitted program per chunk (a few chunk sizes,
powers of two, so the program compiles a handful of times, not per image); the
labels come to the host once per stage. Inference that finds the one-mask
predictions unanimous stops after ``M`` images; the full matrix takes
``M (M + 1) / 2`` (666 for 36 masks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mrs_jax import _checks
from mrs_jax.prediction_maps import predicted_labels

Classifier = Callable[[jax.Array], jax.Array]

# PatchCleanser fills masked pixels with 0 after the model's normalisation, i.e.
# with the normalisation mean; 0.5 grey is that mean for (x - 0.5) / s models.
DEFAULT_FILL = 0.5


class PatchCleanserResult(NamedTuple):
    """The defended label and its certificate from :func:`patchcleanser`.

    Attributes:
      label: the double-masking label.
      certified: True iff every two-mask prediction equals ``label``; then no
        ``s x s`` patch anywhere can change ``label``.
      case: which inference case decided the label: 1 (one-mask predictions
        unanimous), 2 (a minority label confirmed by all its two-mask
        predictions) or 3 (one-mask majority).
    """

    label: int
    certified: bool
    case: int


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


# --------------------------------------------------------------------------- device


@jax.jit
def _classify_pairs(classify, x, masks, fill, pairs):
    """``[B]`` labels of ``x`` with ``masks[i] | masks[j]`` filled, per pair."""

    def occlude(pair):
        hidden = masks[pair[0]] | masks[pair[1]]
        return jnp.where(hidden[:, :, None], fill, x)

    return predicted_labels(classify, jax.vmap(occlude)(pairs))


class _Problem(NamedTuple):
    """Validated inputs on the device, shared by every stage."""

    classify: Partial
    x: jax.Array
    masks: jax.Array
    fill: jax.Array
    batch_size: int


def _pair_labels(problem: _Problem, pairs: np.ndarray) -> np.ndarray:
    """``[P]`` int labels for the ``[P, 2]`` mask-index pairs, one transfer."""
    total = len(pairs)
    # Chunk sizes are powers of two (capped by batch_size) so that stages of
    # different sizes reuse a few compiled programs.
    chunk = min(problem.batch_size, 1 << (total - 1).bit_length())
    padded = -(-total // chunk) * chunk
    pairs = np.concatenate([pairs, np.zeros((padded - total, 2), pairs.dtype)])
    labels = [
        _classify_pairs(
            problem.classify, problem.x, problem.masks, problem.fill, part
        )
        for part in pairs.astype(np.int32).reshape(-1, chunk, 2)
    ]
    return np.asarray(jnp.concatenate(labels))[:total].astype(np.int64)


def _prepare(classify, x, masks, fill, batch_size) -> _Problem:
    _checks.callable_(classify, "classify")
    x = _checks.image(x)
    masks = _check_masks(masks, x.shape)
    fill = _check_fill(fill, x.shape[-1])
    batch_size = _checks.positive_int(batch_size, "batch_size")
    classify = classify if isinstance(classify, Partial) else Partial(classify)
    return _Problem(
        classify, jnp.asarray(x), jnp.asarray(masks), jnp.asarray(fill), batch_size
    )


def _check_masks(masks: Any, image_shape: tuple[int, ...]) -> np.ndarray:
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


def _check_fill(fill: Any, channels: int) -> np.ndarray:
    message = f"fill must be a number or [C] numbers, got {fill!r}"
    if isinstance(fill, bool) or fill is None:
        raise TypeError(message)
    try:
        arr = np.asarray(fill, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(message) from error
    if arr.shape not in ((), (channels,)):
        raise ValueError(
            f"fill must be a scalar or [C] = [{channels}] values, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"fill must lie in [0, 1], got {fill!r}")
    return np.broadcast_to(arr, (channels,)).copy()


# --------------------------------------------------------------------------- public


def two_mask_predictions(
    classify: Classifier,
    x,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> np.ndarray:
    """Labels of ``x`` under every pair of masks, one and two at a time.

    Args:
      classify: ``[B, H, W, C] -> [B, K]`` logits; a plain function or a
        ``jax.tree_util.Partial`` carrying weights (passed to jit as a pytree).
      x: ``[H, W, C]`` float32 image in [0, 1].
      masks: ``[M, H, W]`` bool (True = hidden), e.g. from
        :func:`patchcleanser_masks`.
      fill: the value of hidden pixels: a number or ``[C]`` numbers in [0, 1];
        default 0.5 grey (PatchCleanser fills with the normalisation mean).
      batch_size: masked images per device program (memory: ``batch_size x H x
        W x C``); ``M (M + 1) / 2`` images are classified in all.

    Returns:
      ``[M, M]`` int64 symmetric matrix whose ``(i, j)`` entry is the label with
      masks ``i`` and ``j`` both applied; the diagonal holds the one-mask labels.
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    count = problem.masks.shape[0]
    upper = np.stack(np.triu_indices(count), axis=1)
    labels = _pair_labels(problem, upper)
    matrix = np.empty((count, count), np.int64)
    matrix[upper[:, 0], upper[:, 1]] = labels
    matrix[upper[:, 1], upper[:, 0]] = labels
    return matrix


def double_masking(
    classify: Classifier,
    x,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> int:
    """PatchCleanser's double-masking label for ``x`` (the three cases above).

    Classifies the ``M`` one-mask images first and, only when they disagree, the
    two-mask images of the masks that predict a minority label.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.

    Returns:
      The defended label. Ties for the one-mask majority go to the smaller label.
    """
    return _defend(_prepare(classify, x, masks, fill, batch_size))[0]


def double_masking_certify(
    classify: Classifier,
    x,
    label: int,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> bool:
    """Whether every two-mask prediction of ``x`` equals ``label``.

    If so, :func:`double_masking` returns ``label`` for ``x`` with any ``s x s``
    patch at any position with any content, provided ``masks`` covers every
    ``s x s`` patch (as :func:`patchcleanser_masks` does). Pass the true label
    to count certified accuracy. Stops after the ``M`` one-mask images when one
    of them already differs from ``label``.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.
      label: the class to certify, >= 0.

    Returns:
      True when certified.
    """
    label = _checks.positive_int(label, "label", minimum=0)
    problem = _prepare(classify, x, masks, fill, batch_size)
    one_mask = _one_mask_labels(problem)
    return bool(np.all(one_mask == label)) and _pairs_agree(problem, label)


def patchcleanser(
    classify: Classifier,
    x,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> PatchCleanserResult:
    """Label and certificate together, classifying no image twice.

    ``certified`` is ``double_masking_certify(..., label=result.label, ...)``:
    the defended label holds for every patch position. For certified accuracy
    count ``result.certified and result.label == y``.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.

    Returns:
      A :class:`PatchCleanserResult`.
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    label, case, one_mask = _defend(problem)
    # A certified label makes every prediction, the one-mask ones included,
    # equal to it, so only unanimous (case 1) images need the other pairs.
    certified = case == 1 and _pairs_agree(problem, label)
    return PatchCleanserResult(label, certified, case)


def _one_mask_labels(problem: _Problem) -> np.ndarray:
    count = problem.masks.shape[0]
    return _pair_labels(problem, np.repeat(np.arange(count)[:, None], 2, axis=1))


def _pairs_agree(problem: _Problem, label: int) -> bool:
    """Whether every two-mask prediction with distinct masks equals ``label``."""
    count = problem.masks.shape[0]
    if count == 1:
        return True
    pairs = np.stack(np.triu_indices(count, k=1), axis=1)
    return bool(np.all(_pair_labels(problem, pairs) == label))


def _defend(problem: _Problem) -> tuple[int, int, np.ndarray]:
    """``(label, case, one-mask labels [M])`` by the three-case inference."""
    one_mask = _one_mask_labels(problem)
    values, counts = np.unique(one_mask, return_counts=True)
    if len(values) == 1:
        return int(values[0]), 1, one_mask
    majority = int(values[np.argmax(counts)])  # first maximum: smallest label
    disagreers = np.flatnonzero(one_mask != majority)
    count = len(one_mask)
    pairs = np.stack(
        [np.repeat(disagreers, count), np.tile(np.arange(count), len(disagreers))],
        axis=1,
    )
    rows = _pair_labels(problem, pairs).reshape(len(disagreers), count)
    for mask_index, row in zip(disagreers, rows, strict=True):
        if np.all(row == one_mask[mask_index]):
            return int(one_mask[mask_index]), 2, one_mask
    return majority, 3, one_mask
