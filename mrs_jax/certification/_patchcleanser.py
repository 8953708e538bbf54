"""PatchCleanser double masking (Xiang et al., USENIX Security 2022).

Masks from an R-covering set (:func:`patchcleanser_masks`: every ``s x s``
patch lies inside some mask) hide pixels under a constant ``fill``; the image
is classified with each mask and each pair of masks applied. Guarantee: if
every two-mask prediction of ``x`` equals ``label``, :func:`double_masking`
returns ``label`` on ``x`` with any ``s x s`` patch, anywhere, with any content;
deterministic, no ``alpha``. Proof: ``docs/patchcleanser.md``.

Batches. The public functions are host drivers: ``x`` is one image
``[H, W, C]`` or a batch ``[B, H, W, C]`` sharing one mask set; a batch returns
the list of per-image results, equal to the one-image calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mrs_jax.certification._covering_masks import check_masks
from mrs_jax.core import checks as _checks
from mrs_jax.localization import predicted_labels, refuse_non_finite

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


# --------------------------------------------------------------------------- device


@jax.jit
def _classify_pairs(classify, xs, masks, fill, triples):
    """``[N]`` labels of ``xs[b]`` with ``masks[i] | masks[j]`` filled, per
    ``(b, i, j)`` triple."""

    def occlude(triple):
        hidden = masks[triple[1]] | masks[triple[2]]
        return jnp.where(hidden[:, :, None], fill, xs[triple[0]])

    return predicted_labels(classify, jax.vmap(occlude)(triples))


class _Problem(NamedTuple):
    """Validated inputs on the device, shared by every stage."""

    classify: Partial
    xs: jax.Array  # [B, H, W, C]
    masks: jax.Array
    fill: jax.Array
    batch_size: int
    single: bool  # x was one image [H, W, C]

    @property
    def count(self) -> int:
        return int(self.masks.shape[0])


def _triple_labels(problem: _Problem, triples: np.ndarray) -> np.ndarray:
    """``[N]`` int labels for the ``[N, 3]`` (image, mask, mask) triples, one
    transfer."""
    total = len(triples)
    # Chunk sizes are powers of two (capped by batch_size) so that stages of
    # different sizes reuse a few compiled programs.
    chunk = min(problem.batch_size, 1 << (total - 1).bit_length())
    padded = -(-total // chunk) * chunk
    triples = np.concatenate([triples, np.zeros((padded - total, 3), triples.dtype)])
    labels = [
        _classify_pairs(problem.classify, problem.xs, problem.masks, problem.fill, part)
        for part in triples.astype(np.int32).reshape(-1, chunk, 3)
    ]
    labels = np.asarray(jnp.concatenate(labels))[:total].astype(np.int64)
    return refuse_non_finite(labels, "an occluded image")


def _pair_labels(problem: _Problem, requests: list) -> list:
    """Per image, the labels of its ``[P_b, 2]`` mask pairs (None where none are
    asked), the requests of all images classified in the same chunks."""
    sizes = [0 if pairs is None else len(pairs) for pairs in requests]
    triples = [
        np.concatenate([np.full((size, 1), b), pairs], axis=1)
        for b, (size, pairs) in enumerate(zip(sizes, requests, strict=True))
        if size
    ]
    labels = (
        _triple_labels(problem, np.concatenate(triples))
        if triples
        else np.zeros(0, np.int64)
    )
    parts = np.split(labels, np.cumsum(sizes)[:-1])
    return [
        None if pairs is None else part
        for pairs, part in zip(requests, parts, strict=True)
    ]


def _prepare(classify, x, masks, fill, batch_size) -> _Problem:
    _checks.callable_(classify, "classify")
    xs, single = _checks.image_or_batch(x)
    masks = check_masks(masks, xs.shape[1:])
    fill = _check_fill(fill, xs.shape[-1])
    batch_size = _checks.positive_int(batch_size, "batch_size")
    classify = classify if isinstance(classify, Partial) else Partial(classify)
    return _Problem(
        classify,
        jnp.asarray(xs),
        jnp.asarray(masks),
        jnp.asarray(fill),
        batch_size,
        single,
    )


def _per_image(problem: _Problem, results: list):
    """The one result for one image [H, W, C], the list for a batch."""
    return results[0] if problem.single else results


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
) -> np.ndarray | list[np.ndarray]:
    """Labels of ``x`` under every pair of masks, one and two at a time.

    Host driver (see "Batches" in the module docstring): one image or a batch;
    shapes, dtypes and pixel values are checked on the host.

    Args:
      classify: ``[N, H, W, C] -> [N, K]`` logits; a plain function or a
        ``jax.tree_util.Partial`` carrying weights (passed to jit as a pytree).
      x: ``[H, W, C]`` image or ``[B, H, W, C]`` batch, float in [0, 1].
      masks: ``[M, H, W]`` bool (True = hidden), e.g. from
        :func:`patchcleanser_masks`.
      fill: the value of hidden pixels: a number or ``[C]`` numbers in [0, 1];
        default 0.5 grey (PatchCleanser fills with the normalisation mean).
      batch_size: masked images per device program (memory: ``batch_size x H x
        W x C``); ``M (M + 1) / 2`` images per image are classified in all.

    Returns:
      ``[M, M]`` int64 symmetric matrix whose ``(i, j)`` entry is the label with
      masks ``i`` and ``j`` both applied; the diagonal holds the one-mask labels.
      For a batch, a list of B such matrices.
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    upper = np.stack(np.triu_indices(problem.count), axis=1)
    matrices = []
    for labels in _pair_labels(problem, [upper] * len(problem.xs)):
        matrix = np.empty((problem.count, problem.count), np.int64)
        matrix[upper[:, 0], upper[:, 1]] = labels
        matrix[upper[:, 1], upper[:, 0]] = labels
        matrices.append(matrix)
    return _per_image(problem, matrices)


def double_masking(
    classify: Classifier,
    x,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> int | list[int]:
    """PatchCleanser's double-masking label for ``x``.

    (1) If all one-mask predictions agree, that label; (2) else, for each mask
    whose one-mask label is a minority (in mask order), that label if all of its
    two-mask predictions agree with it; (3) else the one-mask majority.

    Host driver (see "Batches" in the module docstring): one image or a batch;
    shapes, dtypes and pixel values are checked on the host.

    Classifies the ``M`` one-mask images first and, only when they disagree, the
    two-mask images of the masks that predict a minority label.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.

    Returns:
      The defended label (a list of B labels for a batch). Ties for the
      one-mask majority go to the smaller label.
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    one_mask = _one_mask_labels(problem)
    decided = _defend(problem, one_mask, [None] * len(one_mask))[0]
    return _per_image(problem, [label for label, _ in decided])


def double_masking_certify(
    classify: Classifier,
    x,
    label,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> bool | list[bool]:
    """Whether every two-mask prediction of ``x`` equals ``label``.

    Host driver (see "Batches" in the module docstring): one image or a batch;
    shapes, dtypes and pixel values are checked on the host.

    If so, :func:`double_masking` returns ``label`` for ``x`` with any ``s x s``
    patch at any position with any content, provided ``masks`` covers every
    ``s x s`` patch (as :func:`patchcleanser_masks` does; proof:
    ``docs/patchcleanser.md``). Pass the true label to count certified accuracy.
    Stops after the ``M`` one-mask images when one of them already differs from
    ``label``.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.
      label: the class to certify, an int >= 0; for a batch, one int per image
        (``[B]`` ints).

    Returns:
      True when certified (a list of B bools for a batch).
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    labels = _check_labels(label, len(problem.xs), problem.single)
    one_mask = _one_mask_labels(problem)
    agree = [bool(np.all(row == y)) for row, y in zip(one_mask, labels, strict=True)]
    distinct = _distinct_pairs(problem.count)
    rows = _pair_labels(problem, [distinct if a else None for a in agree])
    certified = [
        a and bool(np.all(row == y))
        for a, row, y in zip(agree, rows, labels, strict=True)
    ]
    return _per_image(problem, certified)


def patchcleanser(
    classify: Classifier,
    x,
    masks,
    *,
    fill=DEFAULT_FILL,
    batch_size: int = 256,
) -> PatchCleanserResult | list[PatchCleanserResult]:
    """Label and certificate together, classifying no image twice.

    Host driver (see "Batches" in the module docstring): one image or a batch;
    shapes, dtypes and pixel values are checked on the host.

    ``certified`` is ``double_masking_certify(..., label=result.label, ...)``:
    the defended label holds for every patch position. For certified accuracy
    count ``result.certified and result.label == y``.

    Args:
      classify, x, masks, fill, batch_size: as in :func:`two_mask_predictions`.

    Returns:
      A :class:`PatchCleanserResult` (a list of B for a batch).
    """
    problem = _prepare(classify, x, masks, fill, batch_size)
    one_mask = _one_mask_labels(problem)
    # A certified label makes every prediction, the one-mask ones included,
    # equal to it, so only unanimous (case 1) images need the other pairs; they
    # are classified with the other images' disagreer rows.
    distinct = _distinct_pairs(problem.count)
    unanimous = [distinct if _unanimous(row) else None for row in one_mask]
    decided, pairs = _defend(problem, one_mask, unanimous)
    results = [
        PatchCleanserResult(label, case == 1 and bool(np.all(rest == label)), case)
        for (label, case), rest in zip(decided, pairs, strict=True)
    ]
    return _per_image(problem, results)


def _check_labels(label, count: int, single: bool) -> list[int]:
    """``label`` as ints >= 0: one for one image, ``[B]`` for a batch."""
    if single:
        return [_checks.positive_int(label, "label", minimum=0)]
    if np.ndim(label) != 1 or len(label) != count:
        raise ValueError(
            f"label must be [B] = [{count}] ints for a batch, got {label!r}"
        )
    values = label if isinstance(label, (list, tuple)) else np.asarray(label)
    return [
        _checks.positive_int(value, f"label[{b}]", minimum=0)
        for b, value in enumerate(values)
    ]


def _one_mask_labels(problem: _Problem) -> np.ndarray:
    """``[B, M]`` one-mask labels of every image."""
    diagonal = np.repeat(np.arange(problem.count)[:, None], 2, axis=1)
    return np.stack(_pair_labels(problem, [diagonal] * len(problem.xs)))


def _distinct_pairs(count: int) -> np.ndarray:
    """``[M (M - 1) / 2, 2]`` pairs of distinct masks."""
    return np.stack(np.triu_indices(count, k=1), axis=1)


def _unanimous(one_mask: np.ndarray) -> bool:
    return len(np.unique(one_mask)) == 1


def _disagreer_pairs(one_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(disagreers, pairs)``: the masks predicting a minority label and their
    rows of pairs with every mask."""
    values, counts = np.unique(one_mask, return_counts=True)
    majority = values[np.argmax(counts)]  # first maximum: smallest label
    disagreers = np.flatnonzero(one_mask != majority)
    count = len(one_mask)
    pairs = np.stack(
        [np.repeat(disagreers, count), np.tile(np.arange(count), len(disagreers))],
        axis=1,
    )
    return disagreers, pairs


def _defend(problem: _Problem, one_mask: np.ndarray, extra: list):
    """Three-case inference for every image.

    Args:
      problem: the validated inputs.
      one_mask: ``[B, M]`` one-mask labels.
      extra: per image, pairs to classify along with the case-2 rows (only
        for images whose one-mask labels are unanimous), or None.

    Returns:
      ``(decided, extra_labels)``: per image ``(label, case)``, and the labels of
      ``extra``'s pairs (None where none were asked).
    """
    requests = [
        pairs if _unanimous(row) else _disagreer_pairs(row)[1]
        for row, pairs in zip(one_mask, extra, strict=True)
    ]
    answers = _pair_labels(problem, requests)
    decided, extra_labels = [], []
    for row, answer in zip(one_mask, answers, strict=True):
        if _unanimous(row):
            decided.append((int(row[0]), 1))
            extra_labels.append(answer)
        else:
            decided.append(_minority_or_majority(row, answer))
            extra_labels.append(None)
    return decided, extra_labels


def _minority_or_majority(one_mask: np.ndarray, rows: np.ndarray) -> tuple[int, int]:
    """Case 2 (a minority label confirmed by all its two-mask predictions, in
    mask order) or case 3 (the one-mask majority)."""
    disagreers, _ = _disagreer_pairs(one_mask)
    rows = rows.reshape(len(disagreers), len(one_mask))
    for mask_index, row in zip(disagreers, rows, strict=True):
        if np.all(row == one_mask[mask_index]):
            return int(one_mask[mask_index]), 2
    values, counts = np.unique(one_mask, return_counts=True)
    return int(values[np.argmax(counts)]), 3
