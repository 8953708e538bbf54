"""Monte Carlo counts, CERTIFY and PREDICT for a mask-smoothed classifier.

The smoothed classifier is ``g_M(x) = argmax_c P(f(x + e) = c)`` with
``e ~ N(0, sigma^2 M)``: Gaussian noise only where the ``[H, W]`` mask is 1, in
every channel. CERTIFY's guarantee (Theorem 1 of the paper) is that
``g_M(x + d) = g_M(x)`` for every ``d`` that is zero outside ``M`` and has
``||d||_2 < R``; nothing is claimed for perturbations outside the mask. Radii
and ``sigma`` are l2 norms in [0, 1] pixel units (``MRS_SPEC.md`` sections 1-3).

Noise, forward pass, argmax and counting run in one jitted device computation, in
chunks of ``batch_size`` samples with the chunk's sample axis sharded over every
device. Sample ``i`` always draws its noise from ``fold_in(key, i)``, so the
counts for a given ``(key, x, mask, sigma, num)`` do not depend on the chunk size
or on how many devices share the work.

Noise is drawn only over a window that holds the mask's bounding box (its sides
rounded up to a multiple of 8), not the whole image: for a 5x5 patch mask on
ImageNet that is ~35 times fewer Gaussian draws per sample. Entries of the
window outside the mask get zero noise, so the distribution is exactly
``N(0, sigma^2 M)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.tree_util import Partial

from mrs_jax import _checks, bounds, sharding

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
        count. Memory is bounded by one chunk whatever ``num`` is.
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
    key = _typed_key(key)

    mesh = sharding.sample_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or sharding.SAMPLES not in mesh.axis_names:
        raise TypeError("mesh must be a jax Mesh with a 'samples' axis")
    chunk = sharding.round_up_to_devices(min(batch_size, num), mesh)
    (top, left), window = _noise_window(mask)
    count = _counts_program(mesh, chunk, num_classes, jax.random.key_impl(key), window)
    put = functools.partial(sharding.replicate, mesh=mesh)
    window_mask = mask[top : top + window[0], left : left + window[1]]
    # Weights restored from a checkpoint are committed to one device; the program
    # runs on the whole mesh, so place them there (a no-op when already there).
    classify = jax.device_put(_as_pytree(classify), sharding.replicated(mesh))
    counts_and_bad = count(
        classify,
        put(x),
        put(window_mask.astype(np.float32)),
        put(np.array([top, left], np.int32)),
        put(np.float32(sigma)),
        put(np.asarray(jax.random.key_data(key))),
        put(np.int32(num)),
    )
    counts_and_bad = np.asarray(counts_and_bad).astype(np.int64)
    if counts_and_bad[-1]:
        raise ValueError(
            f"classify ({_describe(classify)}) returned NaN or inf logits for "
            f"{counts_and_bad[-1]} of {num} noisy samples: the classifier is broken "
            "(e.g. non-finite weights), so its counts would be meaningless"
        )
    return counts_and_bad[:-1]


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
    select_key, estimate_key = jax.random.split(_typed_key(key))
    common = dict(num_classes=num_classes, batch_size=batch_size, mesh=mesh)
    selection = sample_counts(
        classify, x, mask, sigma, key=select_key, num=n0, **common
    )
    top = int(np.argmax(selection))
    estimate = sample_counts(
        classify, x, mask, sigma, key=estimate_key, num=n, **common
    )
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


def _as_pytree(classify: Classifier) -> Partial:
    # A Partial with no bound arguments is a pytree with no leaves whose function
    # is part of the tree structure, so plain functions and weight-carrying
    # Partials go through the same jitted program.
    return classify if isinstance(classify, Partial) else Partial(classify)


def _describe(classify: Partial) -> str:
    """A short name for a classifier in error messages."""
    func = classify.func if isinstance(classify, Partial) else classify
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def _typed_key(key) -> jax.Array:
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax.random.key, got {type(key).__name__}")
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != (2,) or key.dtype != jnp.uint32:
            raise TypeError("key must be a typed key from jax.random.key(seed)")
        key = jax.random.wrap_key_data(key)
    if key.shape != ():
        raise ValueError(f"key must be a single key, got shape {key.shape}")
    return key


def _noise_window(mask: np.ndarray, multiple: int = 8):
    """The top-left and static ``(height, width)`` of a window holding the mask.

    Sides are rounded up to a multiple of ``multiple`` (clipped to the image) so
    that masks of similar size share one compiled program.
    """
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:  # an empty mask: no noise at all
        return (0, 0), (1, 1)
    sides = []
    starts = []
    for hits, extent in ((rows, height), (cols, width)):
        side = min(extent, -(-(hits[-1] - hits[0] + 1) // multiple) * multiple)
        sides.append(int(side))
        starts.append(int(min(hits[0], extent - side)))
    return tuple(starts), tuple(sides)


@functools.cache
def _counts_program(mesh, chunk: int, num_classes: int, key_impl, window):
    samples = sharding.along_samples(mesh, 1)
    noisy_images = sharding.along_samples(mesh, 4)

    def count(classify, x, window_mask, corner, sigma, key_data, num):
        key = jax.random.wrap_key_data(key_data, impl=key_impl)
        start = (corner[0], corner[1], 0)
        size = (*window, x.shape[-1])
        clean_window = jax.lax.dynamic_slice(x, start, size)
        scale = sigma * window_mask[:, :, None]

        def noisy(index):
            noise = jax.random.normal(jax.random.fold_in(key, index), size)
            return jax.lax.dynamic_update_slice(x, clean_window + scale * noise, start)

        def add_chunk(step, counts):
            index = step * chunk + jnp.arange(chunk, dtype=jnp.int32)
            index = jax.lax.with_sharding_constraint(index, samples)
            batch = jax.lax.with_sharding_constraint(
                jax.vmap(noisy)(index), noisy_images
            )
            logits = classify(batch)
            if logits.shape != (chunk, num_classes):
                raise ValueError(
                    f"classify must return logits [B, num_classes] = "
                    f"{(chunk, num_classes)}, got {logits.shape}"
                )
            labels = jnp.argmax(logits, axis=-1)
            valid = (index < num)[:, None]
            hits = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
            # The last slot counts samples with a NaN or inf logit.
            bad = ~jnp.all(jnp.isfinite(logits), axis=-1, keepdims=True)
            hits = jnp.concatenate([hits, bad.astype(jnp.int32)], axis=-1)
            return counts + jnp.sum(hits * valid, axis=0)

        steps = (num + chunk - 1) // chunk
        zeros = jnp.zeros((num_classes + 1,), jnp.int32)
        return jax.lax.fori_loop(0, steps, add_chunk, zeros)

    return jax.jit(count, out_shardings=sharding.replicated(mesh))
