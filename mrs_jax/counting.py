"""The on-device counting program shared by CERTIFY, PREDICT and ``certify_at``.

Noise, forward pass, argmax and counting run in one jitted device computation,
in chunks of samples with the chunk's sample axis sharded over every device.
Draw ``i`` always takes its noise from ``fold_in(key, i)``, so the counts of
draws ``start .. start + num - 1`` do not depend on the chunk size, on how many
devices share the work, or on how a run of draws is cut into ranges: the counts
of consecutive ranges add up to the counts of their union.

Noise is drawn only over a window holding the mask's bounding box (sides rounded
up to a multiple of 8), not the whole image: for a 5x5 patch mask on ImageNet
that is ~35 times fewer Gaussian draws per sample. Entries of the window outside
the mask get zero noise, so the distribution is exactly ``N(0, sigma^2 M)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.tree_util import Partial

from mrs_jax import sharding

Classifier = Callable[[jax.Array], jax.Array]
RangeCounter = Callable[[int, int, int], np.ndarray]

# On a CPU backend, a program step takes at most this many samples per device,
# whatever chunk the caller asks for (None: the chunk asked for is the chunk run).
# Off by default: measured by ``benchmarks/bench_counting.py`` (2026-11-30, 2-core
# Zen 4, BatchNorm folded, RESULTS.md section 10), a cap of 64 gained ResNet-110
# at most 7% (within the run-to-run noise on two devices) and cost the small
# models two to three times their speed (the digits model on one device: 2,098
# samples/s capped against 6,086 at chunk 128). The counts never change: draw
# ``i`` has the same noise whatever the chunk.
CPU_CHUNK_PER_DEVICE: int | None = None


def as_pytree(classify: Classifier) -> Partial:
    """``classify`` as a ``Partial``: plain functions and weight-carrying
    Partials then go through the same jitted program (a Partial with no bound
    arguments is a pytree with no leaves)."""
    return classify if isinstance(classify, Partial) else Partial(classify)


def describe(classify: Classifier) -> str:
    """A short name for a classifier in error messages."""
    func = classify.func if isinstance(classify, Partial) else classify
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def noise_window(mask: np.ndarray, multiple: int = 8):
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
def counts_program(mesh: Mesh, chunk: int, num_classes: int, key_impl, window):
    """The jitted ``count(classify, x, window_mask, corner, sigma, key_data,
    start, num)`` for one chunk size, class count, key type and window shape.

    Returns ``[num_classes + 1]`` int32: the class counts of draws ``start ..
    start + num - 1``, then the number of those draws whose logits were not all
    finite. ``start`` and ``num`` are traced: one program serves every range.
    """
    samples = sharding.along_samples(mesh, 1)
    noisy_images = sharding.along_samples(mesh, 4)

    def count(classify, x, window_mask, corner, sigma, key_data, start, num):
        key = jax.random.wrap_key_data(key_data, impl=key_impl)
        corner3 = (corner[0], corner[1], 0)
        size = (*window, x.shape[-1])
        clean_window = jax.lax.dynamic_slice(x, corner3, size)
        scale = sigma * window_mask[:, :, None]

        def noisy(index):
            noise = jax.random.normal(jax.random.fold_in(key, index), size)
            return jax.lax.dynamic_update_slice(
                x, clean_window + scale * noise, corner3
            )

        def add_chunk(step, counts):
            offset = step * chunk + jnp.arange(chunk, dtype=jnp.int32)
            offset = jax.lax.with_sharding_constraint(offset, samples)
            batch = jax.lax.with_sharding_constraint(
                jax.vmap(noisy)(start + offset), noisy_images
            )
            logits = classify(batch)
            if logits.shape != (chunk, num_classes):
                raise ValueError(
                    f"classify must return logits [B, num_classes] = "
                    f"{(chunk, num_classes)}, got {logits.shape}"
                )
            labels = jnp.argmax(logits, axis=-1)
            hits = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
            # The last slot counts samples with a NaN or inf logit.
            bad = ~jnp.all(jnp.isfinite(logits), axis=-1, keepdims=True)
            hits = jnp.concatenate([hits, bad.astype(jnp.int32)], axis=-1)
            return counts + jnp.sum(hits * (offset < num)[:, None], axis=0)

        steps = (num + chunk - 1) // chunk
        zeros = jnp.zeros((num_classes + 1,), jnp.int32)
        return jax.lax.fori_loop(0, steps, add_chunk, zeros)

    return jax.jit(count, out_shardings=sharding.replicated(mesh))


def device_chunk(chunk: int, mesh: Mesh) -> int:
    """The chunk a counting program runs for a requested ``chunk``: a multiple of
    the device count, capped at ``CPU_CHUNK_PER_DEVICE`` samples per device on a
    CPU mesh when that is set (it is not by default)."""
    devices = mesh.devices.size
    if CPU_CHUNK_PER_DEVICE and mesh.devices.flat[0].platform == "cpu":
        chunk = min(chunk, CPU_CHUNK_PER_DEVICE * devices)
    return sharding.round_up_to_devices(chunk, mesh)


def range_counter(
    classify: Classifier,
    x: np.ndarray,
    mask: np.ndarray,
    sigma: float,
    *,
    key: jax.Array,
    num_classes: int,
    mesh: Mesh,
) -> RangeCounter:
    """``count(start, num, chunk)``: the ``[K]`` int64 counts of draws
    ``start .. start + num - 1``, ``chunk`` samples per device step.

    Arguments are taken as validated (``mrs_jax.smoothing.sample_counts`` checks
    them). The image, mask and weights go to the devices once, however many
    ranges are counted. ``chunk`` is at most the samples per device step (see
    :func:`device_chunk`); each distinct chunk compiles one program.

    Raises (from ``count``):
      ValueError: ``classify`` returned NaN or inf logits for some draw (a broken
        classifier; its argmax would be a meaningless class). The check runs in
        the same device program as the counts: no extra forward pass.
    """
    (top, left), window = noise_window(mask)
    put = functools.partial(sharding.replicate, mesh=mesh)
    window_mask = mask[top : top + window[0], left : left + window[1]]
    classify = as_pytree(classify)
    fixed = (
        # Weights restored from a checkpoint are committed to one device; the
        # program runs on the whole mesh, so place them there.
        jax.device_put(classify, sharding.replicated(mesh)),
        put(x),
        put(window_mask.astype(np.float32)),
        put(np.array([top, left], np.int32)),
        put(np.float32(sigma)),
        put(np.asarray(jax.random.key_data(key))),
    )
    key_impl = jax.random.key_impl(key)

    def count(start: int, num: int, chunk: int) -> np.ndarray:
        chunk = device_chunk(chunk, mesh)
        program = counts_program(mesh, chunk, num_classes, key_impl, window)
        counts = program(*fixed, put(np.int32(start)), put(np.int32(num)))
        counts = np.asarray(counts).astype(np.int64)
        if counts[-1]:
            raise ValueError(
                f"classify ({describe(classify)}) returned NaN or inf logits for "
                f"{counts[-1]} of {num} noisy samples: the classifier is broken "
                "(e.g. non-finite weights), so its counts would be meaningless"
            )
        return counts[:-1]

    return count
