"""CERTIFY and PREDICT for a classifier smoothed with Gaussian noise inside a mask.

``g_M(x) = argmax_c P(f(x + e) = c)`` with ``e ~ N(0, sigma^2 M)``: noise only
where the ``[H, W]`` mask is 1, in every channel. Guarantee (Theorem 1): a label
certified at radius R satisfies ``g_M(x + d) = g_M(x)`` for every ``d`` that is
zero outside ``M`` with ``||d||_2 < R``, with probability at least
``1 - alpha``; nothing is claimed outside the mask. Radii and ``sigma`` are l2
norms in [0, 1] pixel units.

:func:`certify` and :func:`predict` are host drivers over one image or a batch;
they count on the device through ``_counting`` (:func:`sample_counts` is the
device function). Derivation: ``docs/masked_smoothing.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

import mrs_jax.certification._bounds as bounds
import mrs_jax.certification._counting as counting
from mrs_jax.core import ABSTAIN, checks as _checks, sharding

Classifier = Callable[[jax.Array], jax.Array]


class Certificate(NamedTuple):
    """The outcome of :func:`certify`.

    Attributes:
      label: the certified class, or ``ABSTAIN`` (-1).
      radius: the certified l2 radius inside the mask; 0.0 on abstain.
      p_lower: the one-sided Clopper-Pearson lower bound on the top class's
        probability, from the estimation draws.
      selection_counts: ``[K]`` counts of the ``n0`` selection draws.
      estimate_counts: ``[K]`` counts of the ``n`` estimation draws.
    """

    label: int
    radius: float
    p_lower: float
    selection_counts: np.ndarray
    estimate_counts: np.ndarray


class Prediction(NamedTuple):
    """The outcome of :func:`predict`: ``label`` (or ``ABSTAIN``), the binomial
    test's ``p_value`` and the ``[K]`` ``counts``."""

    label: int
    p_value: float
    counts: np.ndarray


class Batch(NamedTuple):
    """A host driver's validated inputs, as a batch (:func:`batch_inputs`)."""

    classify: Classifier
    images: np.ndarray  # [B, H, W, C] float32 in [0, 1]
    masks: np.ndarray  # [B, H, W] bool, none empty
    sigma: float
    keys: jax.Array  # [B] typed keys
    num_classes: int
    batch_size: int
    mesh: Mesh
    single: bool  # the caller passed one image: return one result

    def counter(self) -> counting.Counter:
        return counting.Counter(
            self.classify,
            self.images,
            self.masks,
            self.sigma,
            num_classes=self.num_classes,
            mesh=self.mesh,
        )

    def count(self, counter, keys, num: int) -> np.ndarray:
        """``[B, K]`` counts of every image's draws ``0 .. num - 1``."""
        count = len(self.images)
        chunk = counting.chunk_for(count * num, self.batch_size, self.mesh)
        starts = np.zeros(count, np.int64)
        return counter.count(keys, starts, np.full(count, num), chunk)

    def result(self, results: list):
        return results[0] if self.single else results


def batch_inputs(classify, x, mask, sigma, key, num_classes, batch_size, mesh) -> Batch:
    """Checks a host driver's inputs: one image or a batch (values included).

    ``x`` is ``[H, W, C]`` or ``[B, H, W, C]`` float in [0, 1]; ``mask`` is
    ``[H, W]`` (shared by every image) or ``[B, H, W]``, bool or {0, 1}, none all
    False; ``key`` is one typed key (a batch of B > 1 images then uses
    ``jax.random.split(key, B)``) or ``[B]`` keys.

    Raises:
      ValueError, TypeError: naming the argument at fault.
    """
    _checks.callable_(classify, "classify")
    images, single = _checks.image_or_batch(x)
    count = len(images)
    mask_array = np.asarray(mask) if mask is not None else None
    if single or (mask_array is not None and mask_array.ndim == 2):
        one = _checks.mask(mask, images.shape[1:])
        if not one.any():
            raise ValueError(
                "mask is all False: there is no pixel to smooth or certify"
            )
        masks = np.broadcast_to(one, (count, *one.shape))
    else:
        masks = _checks.masks(mask, images.shape, name="mask")
    sigma = _checks.positive_float(sigma, "sigma")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    keys = _checks.key_or_keys(key, count, single)
    mesh = sharding.sample_mesh() if mesh is None else mesh
    _checks.mesh_with_axis(mesh, sharding.SAMPLES)
    return Batch(
        classify, images, masks, sigma, keys, num_classes, batch_size, mesh, single
    )


def draws(value, name: str) -> int:
    """``value`` as a number of draws in ``[1, 2**31 - 1]`` (draw indices are
    int32 on the device)."""
    value = _checks.positive_int(value, name)
    if value > counting.MAX_DRAWS:
        raise ValueError(
            f"{name} must be <= 2**31 - 1 = {counting.MAX_DRAWS} (draw indices are "
            f"int32 on the device), got {value}"
        )
    return value


def certify(
    classify: Classifier,
    x,
    mask,
    sigma: float,
    *,
    key: jax.Array,
    n0: int,
    n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    mesh: Mesh | None = None,
) -> Certificate | list[Certificate]:
    """Host driver: Cohen et al.'s CERTIFY for the classifier smoothed inside
    ``mask``, for one image or a batch (``docs/masked_smoothing.md``).

    ``n0`` draws select the top class; ``n`` fresh, independent draws (a key split
    from the selection key) estimate its probability. With probability at least
    ``1 - alpha`` over the draws, a returned label ``c`` satisfies
    ``g_M(x + d) = c`` for every ``d`` that is zero outside the mask with
    ``||d||_2 < radius``. Nothing is claimed outside the mask.

    Image ``b`` of a batch gets exactly what the one-image call with
    ``key=keys[b]`` gets, so its guarantee is the one-image guarantee. Every
    input is checked here, values included.

    Args:
      classify: ``[B, H, W, C] -> [B, num_classes]`` logits (a plain function or
        a weight-carrying ``jax.tree_util.Partial``).
      x: ``[H, W, C]`` float32 image in [0, 1], or a batch ``[B, H, W, C]``.
      mask: ``[H, W]`` (or ``[B, H, W]``) bool or {0, 1}; noise where it is 1.
      sigma: noise standard deviation, > 0, in [0, 1] pixel units.
      key: one typed PRNG key (``jax.random.key``), or ``[B]`` keys for a batch
        (one key for a batch of B > 1 means ``jax.random.split(key, B)``); each
        is split into independent selection and estimation keys.
      n0: selection draws, >= 1 (paper: 100).
      n: estimation draws, in ``[1, 2**31 - 1]`` (paper: 100,000).
      alpha: failure probability in (0, 1) (paper: 0.001).
      num_classes: K, the classifier's number of outputs.
      batch_size: (image, draw) pairs per device step; rounded up to a multiple
        of the device count. Memory is bounded by one step; the counts do not
        depend on it.
      mesh: the devices to shard the draws over (a ``"samples"`` axis); default
        all of them.

    Returns:
      A :class:`Certificate` (a list of them for a batch); ``label == ABSTAIN``
      and ``radius == 0.0`` when the lower bound does not exceed 1/2.

    Raises:
      ValueError, TypeError: a bad input, or ``classify`` returned NaN or inf
        logits for some draw (a broken classifier).

    Examples:
      A two-class linear classifier, noise on a 2 x 2 square of a 4 x 4 image:

      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from mrs_jax.certification import certify, square_mask
      >>> def classify(images):  # [B, 4, 4, 1] -> [B, 2]
      ...     score = jnp.sum(images, axis=(1, 2, 3)) - 4.0
      ...     return jnp.stack([-score, score], axis=-1)
      >>> x = np.full((4, 4, 1), 0.75, np.float32)
      >>> mask = square_mask(x.shape, 1, 1, 2)
      >>> cert = certify(classify, x, mask, 0.25, key=jax.random.key(0), n0=100,
      ...                n=100, alpha=0.001, num_classes=2, batch_size=100)
      >>> print(cert.label, round(cert.radius, 3), cert.estimate_counts.tolist())
      1 0.375 [0, 100]

      The score 8 lies 16 noise deviations from 0, so every draw votes 1 and
      ``p_lower = 0.001 ** (1 / 100)``; the exact radius (Corollary 1) is
      ``8 / ||M * w||_2 = 4``.
    """
    batch = batch_inputs(classify, x, mask, sigma, key, num_classes, batch_size, mesh)
    n0 = draws(n0, "n0")
    n = draws(n, "n")
    alpha = _checks.probability_level(alpha)
    # The one-image split(key) -> (select_key, estimate_key), for every image.
    select_keys, estimate_keys = jax.vmap(jax.random.split, out_axes=1)(batch.keys)
    counter = batch.counter()
    selection = batch.count(counter, select_keys, n0)
    estimate = batch.count(counter, estimate_keys, n)
    return batch.result(
        [
            certificate_from_counts(s, e, batch.sigma, alpha)
            for s, e in zip(selection, estimate, strict=True)
        ]
    )


def certificate_from_counts(
    selection: np.ndarray, estimate: np.ndarray, sigma: float, alpha: float
) -> Certificate:
    """CERTIFY's decision from its counts: the top class of the ``[K]`` selection
    counts, certified with radius ``sigma * Phi^-1(p_lower)`` when the
    Clopper-Pearson lower bound of its share of the ``[K]`` estimate counts (at
    level ``alpha``) exceeds 1/2, else ``ABSTAIN`` with radius 0."""
    top = int(np.argmax(selection))
    n = int(np.sum(estimate))
    p_lower = bounds.clopper_pearson_lower(int(estimate[top]), n, alpha)
    if p_lower <= 0.5:
        return Certificate(ABSTAIN, 0.0, p_lower, selection, estimate)
    radius = bounds.certified_radius(sigma, p_lower)
    return Certificate(top, radius, p_lower, selection, estimate)


def predict(
    classify: Classifier,
    x,
    mask,
    sigma: float,
    *,
    key: jax.Array,
    n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    mesh: Mesh | None = None,
) -> Prediction | list[Prediction]:
    """Host driver: Cohen et al.'s PREDICT, the smoothed label or ``ABSTAIN``,
    for one image or a batch (arguments as in :func:`certify`).

    Returns the top class when ``binomtest(nA, nA + nB, 0.5).pvalue <= alpha``
    for the top two counts ``nA >= nB``; the probability of returning a class
    other than ``g_M(x)`` is then at most ``alpha``. Image ``b`` of a batch gets
    the one-image result with ``key=keys[b]``.

    Returns:
      A :class:`Prediction` (a list of them for a batch).

    Raises:
      ValueError, TypeError: as :func:`certify`.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from mrs_jax.certification import predict, square_mask
      >>> def classify(images):  # [B, 4, 4, 1] -> [B, 2]
      ...     score = jnp.sum(images, axis=(1, 2, 3)) - 4.0
      ...     return jnp.stack([-score, score], axis=-1)
      >>> x = np.full((4, 4, 1), 0.75, np.float32)
      >>> pred = predict(classify, x, square_mask(x.shape, 1, 1, 2), 0.25,
      ...                key=jax.random.key(1), n=100, alpha=0.001,
      ...                num_classes=2, batch_size=100)
      >>> print(pred.label, pred.counts.tolist(), pred.p_value < 0.001)
      1 [0, 100] True
    """
    batch = batch_inputs(classify, x, mask, sigma, key, num_classes, batch_size, mesh)
    n = draws(n, "n")
    alpha = _checks.probability_level(alpha)
    counts = batch.count(batch.counter(), batch.keys, n)
    return batch.result([prediction_from_counts(c, alpha) for c in counts])


def prediction_from_counts(counts: np.ndarray, alpha: float) -> Prediction:
    """PREDICT's decision from its ``[K]`` counts at level ``alpha``."""
    order = np.argsort(-counts, kind="stable")
    n_a = int(counts[order[0]])
    n_b = int(counts[order[1]]) if counts.size > 1 else 0
    p_value = bounds.binomial_p_value(n_a, n_b)
    label = int(order[0]) if p_value <= alpha else ABSTAIN
    return Prediction(label, p_value, counts)
