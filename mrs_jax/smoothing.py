"""Monte Carlo counts, CERTIFY and PREDICT for a mask-smoothed classifier.

The smoothed classifier is ``g_M(x) = argmax_c P(f(x + e) = c)`` with
``e ~ N(0, sigma^2 M)``: Gaussian noise only where the ``[H, W]`` mask is 1, in
every channel. CERTIFY's guarantee (Theorem 1 of the paper) is that
``g_M(x + d) = g_M(x)`` for every ``d`` that is zero outside ``M`` and has
``||d||_2 < R``; nothing is claimed for perturbations outside the mask. Radii
and ``sigma`` are l2 norms in [0, 1] pixel units (``MRS_SPEC.md`` sections 1-3).

Counting runs on the device (``mrs_jax.counting``): noise, forward pass, argmax
and counts in one jitted computation, in chunks of ``batch_size`` samples
sharded over every device. Sample ``i`` always draws its noise from
``fold_in(key, i)``, so the counts for a given ``(key, x, mask, sigma, num)`` do
not depend on the chunk size or on how many devices share the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from mrs_jax import _checks, bounds, counting, sharding

ABSTAIN = -1

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


def sample_counts(
    classify: Classifier,
    x,
    mask,
    sigma: float,
    *,
    key: jax.Array,
    num: int,
    num_classes: int,
    batch_size: int,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Counts ``argmax classify(x + e)`` over ``num`` draws of masked noise.

    Args:
      classify: ``[B, H, W, C] -> [B, num_classes]`` logits; a plain function or a
        ``jax.tree_util.Partial`` whose leaves (e.g. model weights) are passed to
        the jitted computation as arguments rather than baked in as constants.
      x: ``[H, W, C]`` float32 image in [0, 1].
      mask: ``[H, W]`` bool or {0, 1}; noise is added where it is 1.
      sigma: noise standard deviation, > 0, in [0, 1] pixel units.
      key: a typed PRNG key (``jax.random.key``).
      num: number of noisy samples, >= 1; need not be a multiple of ``batch_size``.
      num_classes: K, the classifier's number of outputs.
      batch_size: samples per chunk; rounded up to a multiple of the device
        count. Memory is bounded by one chunk whatever ``num`` is; the counts
        do not depend on it (draw ``i`` always has the same noise). On a CPU
        backend ``counting.CPU_CHUNK_PER_DEVICE``, when set, caps the samples per
        device of a chunk.
      mesh: the devices to shard the samples over; default all of them.

    Returns:
      ``[num_classes]`` int64 counts summing to ``num``.

    Raises:
      ValueError: an all-False ``mask`` (a certificate over no pixel means
        nothing), ``num_classes < 2``, or ``classify`` returned NaN or inf logits
        for some noisy sample (a broken classifier; its argmax would be a
        meaningless class). The non-finite check runs in the same device program
        as the counts, so it costs no extra forward pass.
    """
    _checks.callable_(classify, "classify")
    x = _checks.image(x)
    mask = _checks.mask(mask, x.shape)
    if not mask.any():
        raise ValueError("mask is all False: there is no pixel to smooth or certify")
    sigma = _checks.positive_float(sigma, "sigma")
    num = _checks.positive_int(num, "num")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    key = _checks.prng_key(key)

    mesh = sharding.sample_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or sharding.SAMPLES not in mesh.axis_names:
        raise TypeError("mesh must be a jax Mesh with a 'samples' axis")
    chunk = sharding.round_up_to_devices(min(batch_size, num), mesh)
    count = counting.range_counter(
        classify, x, mask, sigma, key=key, num_classes=num_classes, mesh=mesh
    )
    return count(0, num, chunk)


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
) -> Certificate:
    """Cohen et al.'s CERTIFY for the classifier smoothed inside ``mask``.

    ``n0`` draws select the top class; ``n`` fresh, independent draws (a key split
    from the selection key) estimate its probability. With probability at least
    ``1 - alpha`` over the draws, a returned label ``c`` satisfies
    ``g_M(x + d) = c`` for every ``d`` that is zero outside the mask with
    ``||d||_2 < radius``. Nothing is claimed outside the mask.

    Args:
      classify, x, mask, sigma, num_classes, batch_size, mesh: as in
        :func:`sample_counts`.
      key: typed PRNG key; split into independent selection and estimation keys.
      n0: selection draws, >= 1 (paper: 100).
      n: estimation draws, >= 1 (paper: 100,000).
      alpha: failure probability in (0, 1) (paper: 0.001).

    Returns:
      A :class:`Certificate`; ``label == ABSTAIN`` and ``radius == 0.0`` when the
      lower bound does not exceed 1/2.
    """
    n0 = _checks.positive_int(n0, "n0")
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    select_key, estimate_key = jax.random.split(_checks.prng_key(key))
    common = dict(num_classes=num_classes, batch_size=batch_size, mesh=mesh)
    selection = sample_counts(
        classify, x, mask, sigma, key=select_key, num=n0, **common
    )
    estimate = sample_counts(
        classify, x, mask, sigma, key=estimate_key, num=n, **common
    )
    return certificate_from_counts(selection, estimate, sigma, alpha)


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
) -> Prediction:
    """Cohen et al.'s PREDICT: the smoothed label, or ``ABSTAIN``.

    Returns the top class when ``binomtest(nA, nA + nB, 0.5).pvalue <= alpha``
    for the top two counts ``nA >= nB``; the probability of returning a class
    other than ``g_M(x)`` is then at most ``alpha``.
    """
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    counts = sample_counts(
        classify,
        x,
        mask,
        sigma,
        key=key,
        num=n,
        num_classes=num_classes,
        batch_size=batch_size,
        mesh=mesh,
    )
    order = np.argsort(-counts, kind="stable")
    n_a = int(counts[order[0]])
    n_b = int(counts[order[1]]) if counts.size > 1 else 0
    p_value = bounds.binomial_p_value(n_a, n_b)
    label = int(order[0]) if p_value <= alpha else ABSTAIN
    return Prediction(label, p_value, counts)
