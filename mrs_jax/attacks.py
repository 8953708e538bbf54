"""Adversarial patch attack on the base classifier (paper Section 4.1, spec s. 5).

PGD with l_inf = 1 inside an s x s square: the patch pixels may take any value in
[0, 1]. Sign-gradient ascent on the cross-entropy of the true label, projection onto
[0, 1] after every step, run from `num_locations` random top-left positions at once;
the location whose final loss is greatest is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mrs_jax import _checks


class PatchAttackResult(NamedTuple):
    """Output of `patch_attack(..., return_loss=True)`.

    Attributes:
      image: [H, W, C] (or [B, H, W, C]) float32 in [0, 1], the input with the patch.
      top_left: [2] (or [B, 2]) int32, (row, column) of the patch's top-left pixel.
      loss: [] (or [B]) float32, cross-entropy of the true label at `image`.
    """

    image: jax.Array
    top_left: jax.Array
    loss: jax.Array


def _paste(image: jax.Array, patch: jax.Array, top_left: jax.Array) -> jax.Array:
    """Writes `patch` [s, s, C] into `image` [H, W, C] at `top_left` [2]."""
    return lax.dynamic_update_slice(image, patch, (top_left[0], top_left[1], 0))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits [..., K], labels [...] int -> [...] cross-entropy (float32)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


@functools.partial(
    jax.jit, static_argnames=("size", "num_locations", "steps", "location_chunk")
)
def _attack_batch(
    logits_fn: jax.tree_util.Partial,
    images: jax.Array,
    labels: jax.Array,
    keys: jax.Array,
    step_size: jax.Array,
    *,
    size: int,
    num_locations: int,
    steps: int,
    location_chunk: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Jitted core. images [B, H, W, C], labels [B], keys [B] typed keys."""
    batch, height, width, channels = images.shape
    num_chunks = -(-num_locations // location_chunk)
    padded = num_chunks * location_chunk

    def sample(image_key):
        location_key, init_key = jax.random.split(image_key)
        top_left = jax.random.randint(
            location_key,
            (num_locations, 2),
            0,
            jnp.array([height - size + 1, width - size + 1]),
        )
        patch = jax.random.uniform(
            init_key, (num_locations, size, size, channels), images.dtype
        )
        return top_left, patch

    top_lefts, patches = jax.vmap(sample)(keys)  # [B, L, 2], [B, L, s, s, C]
    # Pad the location axis to whole chunks; padded entries are discarded below.
    pad = padded - num_locations
    top_lefts = jnp.pad(top_lefts, ((0, 0), (0, pad), (0, 0)))
    patches = jnp.pad(patches, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))

    def to_chunks(a):  # [B, padded, ...] -> [num_chunks, B, chunk, ...]
        a = a.reshape((batch, num_chunks, location_chunk) + a.shape[2:])
        return jnp.swapaxes(a, 0, 1)

    def from_chunks(a):  # inverse of to_chunks
        a = jnp.swapaxes(a, 0, 1)
        return a.reshape((batch, padded) + a.shape[3:])

    paste_locations = jax.vmap(_paste, in_axes=(None, 0, 0))  # one image, c patches
    paste_all = jax.vmap(paste_locations)  # B images

    def losses(chunk_patches, chunk_top_lefts):  # [B, c, s, s, C], [B, c, 2] -> [B, c]
        adversarial = paste_all(images, chunk_patches, chunk_top_lefts)
        flat = adversarial.reshape((-1, height, width, channels))
        logits = logits_fn(flat).reshape((batch, location_chunk, -1))
        return _cross_entropy(logits, labels[:, None])

    def run_chunk(chunk):
        chunk_patches, chunk_top_lefts = chunk

        # The model sees every (image, location) pair as one batch entry, so the
        # gradient of the summed loss is each patch's own gradient (models must not
        # mix batch entries, e.g. BatchNorm must be in inference mode).
        def step(patch, _):
            grad = jax.grad(lambda p: losses(p, chunk_top_lefts).sum())(patch)
            return jnp.clip(patch + step_size * jnp.sign(grad), 0.0, 1.0), None

        chunk_patches, _ = lax.scan(step, chunk_patches, None, length=steps)
        return chunk_patches, losses(chunk_patches, chunk_top_lefts)

    final_patches, final_losses = lax.map(
        run_chunk, (to_chunks(patches), to_chunks(top_lefts))
    )
    final_patches = from_chunks(final_patches)
    final_losses = from_chunks(final_losses)
    final_losses = jnp.where(jnp.arange(padded) < num_locations, final_losses, -jnp.inf)

    best = jnp.argmax(final_losses, axis=1)  # [B]; ties -> first sampled location
    rows = jnp.arange(batch)
    best_patch = final_patches[rows, best]
    best_top_left = top_lefts[rows, best].astype(jnp.int32)
    adversarial = jax.vmap(_paste)(images, best_patch, best_top_left)
    return adversarial, best_top_left, final_losses[rows, best]


def patch_attack(
    logits_fn: Callable[[jax.Array], jax.Array],
    x: Any,
    y: Any,
    size: int,
    *,
    key: jax.Array,
    num_locations: int = 80,
    steps: int,
    step_size: float,
    location_chunk: int | None = None,
    return_loss: bool = False,
) -> tuple[jax.Array, jax.Array] | PatchAttackResult:
    """Untargeted s x s patch attack: PGD at random locations, keep the worst.

    For each image, `num_locations` top-left positions are drawn uniformly over all
    positions with the patch fully inside the image (duplicates possible). At each,
    the patch starts uniform random in [0, 1] and takes `steps` steps
    `patch <- clip(patch + step_size * sign(grad CE), 0, 1)`, where CE is the
    cross-entropy of the true label. The location with the greatest final CE wins.
    Pixels outside the patch are never changed. Image i of a batch uses the key
    `fold_in(key, i)`; a single image uses `fold_in(key, 0)`, so it matches the
    first image of a batch.

    Args:
      logits_fn: classifier, images [N, H, W, C] -> logits [N, K]. A plain function
        or a `jax.tree_util.Partial` carrying weights as leaves (passed to jit as a
        pytree, so new weights do not recompile). Must treat batch entries
        independently (inference-mode BatchNorm).
      x: [H, W, C] or [B, H, W, C] float in [0, 1].
      y: true label: int for one image, [B] ints for a batch.
      size: patch side s, 1 <= s <= min(H, W).
      key: typed PRNG key (`jax.random.key`).
      num_locations: random locations per image (paper: 80).
      steps: PGD steps (>= 0; 0 keeps the random initial patch).
      step_size: sign-gradient step in pixel units (> 0).
      location_chunk: locations run together per model batch; None = all at once.
        Smaller values bound memory (B * location_chunk images per forward pass)
        for big models; results do not depend on it.
      return_loss: also return the final loss (see `PatchAttackResult`).

    Returns:
      (image, top_left): image like x with the patch pasted in, float32; top_left
      [2] or [B, 2] int32 (row, column). With `return_loss`, a `PatchAttackResult`.

    Raises:
      TypeError, ValueError: on a bad argument, naming it.
    """
    logits_fn = _checks.callable_pytree(logits_fn, "logits_fn")
    images, single = _checks.image_or_batch(x)
    batch = images.shape[0]
    key = _checks.typed_key(key)
    settings = _settings(
        logits_fn, images, size, num_locations, steps, step_size, location_chunk
    )
    labels = _checks.label_or_labels(y, batch, single, settings.num_classes)

    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))
    adversarial, top_left, loss = _run(logits_fn, images, labels, keys, settings)
    if single:
        adversarial, top_left, loss = adversarial[0], top_left[0], loss[0]
    if return_loss:
        return PatchAttackResult(adversarial, top_left, loss)
    return adversarial, top_left


def patch_attack_batch(
    logits_fn: Callable[[jax.Array], jax.Array],
    images: Any,
    labels: Any,
    size: int,
    *,
    keys: jax.Array,
    num_locations: int = 80,
    steps: int,
    step_size: float,
    location_chunk: int | None = None,
) -> PatchAttackResult:
    """The patch attack on B images, each with its own key: one program.

    ``patch_attack`` on a batch keys image ``i`` by ``fold_in(key, i)``; here
    image ``b`` is attacked exactly as ``patch_attack(logits_fn, images[b],
    labels[b], size, key=keys[b], ...)`` would (``fold_in(keys[b], 0)``), with
    all (image, location) pairs vmapped in one program.

    Args:
      logits_fn, size, num_locations, steps, step_size, location_chunk: as in
        :func:`patch_attack`.
      images: ``[B, H, W, C]`` float in [0, 1].
      labels: ``[B]`` true labels.
      keys: ``[B]`` typed keys.

    Returns:
      ``PatchAttackResult`` with ``image [B, H, W, C]``, ``top_left [B, 2]``
      and ``loss [B]``.
    """
    logits_fn = _checks.callable_pytree(logits_fn, "logits_fn")
    images = _checks.image_batch(images)
    keys = _checks.key_batch(keys, len(images))
    settings = _settings(
        logits_fn, images, size, num_locations, steps, step_size, location_chunk
    )
    labels = _checks.labels(labels, len(images), settings.num_classes)
    # patch_attack's key for a single image, for every image.
    image_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    return PatchAttackResult(
        *_run(logits_fn, jnp.asarray(images), labels, image_keys, settings)
    )


class _Settings(NamedTuple):
    """An attack's checked budget, and the classifier's number of classes."""

    size: int
    num_locations: int
    steps: int
    step_size: float
    location_chunk: int
    num_classes: int


def _settings(
    logits_fn, images, size, num_locations, steps, step_size, location_chunk
) -> _Settings:
    """Checks the budget shared by both entry points against ``images``
    ``[B, H, W, C]`` and the classifier's output shape."""
    size = _checks.patch_size(size, images.shape[1:3])
    num_locations = _checks.positive_int(num_locations, "num_locations")
    steps = _checks.positive_int(steps, "steps", minimum=0)
    step_size = _checks.positive_float(step_size, "step_size")
    if location_chunk is None:
        location_chunk = num_locations
    location_chunk = _checks.positive_int(location_chunk, "location_chunk")
    num_classes = _checks.num_logits(logits_fn, images, "logits_fn")
    return _Settings(
        size,
        num_locations,
        steps,
        step_size,
        min(location_chunk, num_locations),
        num_classes,
    )


def _run(logits_fn, images, labels, keys, settings: _Settings):
    """``_attack_batch`` with the checked settings; image ``b`` uses ``keys[b]``."""
    return _attack_batch(
        logits_fn,
        jnp.asarray(images, jnp.float32),
        jnp.asarray(labels, jnp.int32),
        keys,
        jnp.float32(settings.step_size),
        size=settings.size,
        num_locations=settings.num_locations,
        steps=settings.steps,
        location_chunk=settings.location_chunk,
    )
