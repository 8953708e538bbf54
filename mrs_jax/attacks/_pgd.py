"""Adversarial patch attack on the base classifier (paper Section 4.1, spec s. 5).

PGD with l_inf = 1 inside an s x s square: the patch pixels may take any value in
[0, 1]. Sign-gradient ascent on the cross-entropy of the true label, projection onto
[0, 1] after every step, run from `num_locations` random top-left positions at once;
the location whose final loss is greatest is kept.

`patch_attack` is a device function written for one image: jit it, or
`jax.vmap` it over images, labels and keys, inside your own code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mrs_jax.core import checks as _checks


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


class _Settings(NamedTuple):
    """An attack's checked static budget (hashable: a static jit argument)."""

    size: int
    num_locations: int
    steps: int
    location_chunk: int


def _paste(image: jax.Array, patch: jax.Array, top_left: jax.Array) -> jax.Array:
    """Writes `patch` [s, s, C] into `image` [H, W, C] at `top_left` [2]."""
    return lax.dynamic_update_slice(image, patch, (top_left[0], top_left[1], 0))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits [..., K], labels [...] int -> [...] cross-entropy (float32)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def _padded_starts(key, image_shape, settings: _Settings, dtype):
    """Random top-lefts [P, 2] and initial patches [P, s, s, C], the location axis
    padded to P = whole chunks (padded entries are discarded by the caller)."""
    height, width, channels = image_shape
    size, count = settings.size, settings.num_locations
    location_key, init_key = jax.random.split(key)
    upper = jnp.array([height - size + 1, width - size + 1])
    top_lefts = jax.random.randint(location_key, (count, 2), 0, upper)
    patches = jax.random.uniform(init_key, (count, size, size, channels), dtype)
    pad = -(-count // settings.location_chunk) * settings.location_chunk - count
    top_lefts = jnp.pad(top_lefts, ((0, pad), (0, 0)))
    patches = jnp.pad(patches, ((0, pad), (0, 0), (0, 0), (0, 0)))
    return top_lefts, patches


@functools.partial(jax.jit, static_argnames="settings")
def _attack_one(
    logits_fn: jax.tree_util.Partial,
    image: jax.Array,
    label: jax.Array,
    key: jax.Array,
    step_size: jax.Array,
    settings: _Settings,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Jitted core for one image [H, W, C], label [] and typed key []."""
    top_lefts, patches = _padded_starts(key, image.shape, settings, image.dtype)
    chunk = settings.location_chunk
    padded = top_lefts.shape[0]

    def to_chunks(a):  # [padded, ...] -> [num_chunks, chunk, ...]
        return a.reshape((padded // chunk, chunk) + a.shape[1:])

    paste_locations = jax.vmap(_paste, in_axes=(None, 0, 0))

    def losses(chunk_patches, chunk_top_lefts):  # [c, s, s, C], [c, 2] -> [c]
        logits = logits_fn(paste_locations(image, chunk_patches, chunk_top_lefts))
        return _cross_entropy(logits, label[None])

    def run_chunk(part):
        chunk_patches, chunk_top_lefts = part

        # The model sees every location as one batch entry, so the gradient of the
        # summed loss is each patch's own gradient (models must not mix batch
        # entries, e.g. BatchNorm must be in inference mode).
        def step(patch, _):
            grad = jax.grad(lambda p: losses(p, chunk_top_lefts).sum())(patch)
            return jnp.clip(patch + step_size * jnp.sign(grad), 0.0, 1.0), None

        chunk_patches, _ = lax.scan(step, chunk_patches, None, length=settings.steps)
        return chunk_patches, losses(chunk_patches, chunk_top_lefts)

    final_patches, final_losses = lax.map(
        run_chunk, (to_chunks(patches), to_chunks(top_lefts))
    )
    final_patches = final_patches.reshape(patches.shape)
    final_losses = final_losses.reshape(padded)
    valid = jnp.arange(padded) < settings.num_locations
    final_losses = jnp.where(valid, final_losses, -jnp.inf)
    best = jnp.argmax(final_losses)  # ties -> first sampled location
    best_top_left = top_lefts[best].astype(jnp.int32)
    adversarial = _paste(image, final_patches[best], best_top_left)
    return adversarial, best_top_left, final_losses[best]


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

    `num_locations` top-left positions are drawn uniformly over all positions
    with the patch fully inside the image (duplicates possible). At each, the
    patch starts uniform random in [0, 1] and takes `steps` steps
    `patch <- clip(patch + step_size * sign(grad CE), 0, 1)`, where CE is the
    cross-entropy of the true label. The location with the greatest final CE wins.
    Pixels outside the patch are never changed. The image is attacked with the
    key `fold_in(key, 0)`.

    A device function, written for one image: `jax.jit` it and `jax.vmap` it
    over images, labels and keys (`x`, `y`, `key`), with the other arguments
    static, e.g. `jax.vmap(lambda x, y, k: patch_attack(f, x, y, 5, key=k,
    steps=10, step_size=0.1))(images, labels, keys)`; image b of that batch
    equals `patch_attack(f, images[b], labels[b], 5, key=keys[b], ...)`.
    For convenience `x` may also be a batch [B, H, W, C] (with `y` [B]): that is
    the same vmap with image i keyed by `fold_in(key, i)`, whose first image
    equals the one-image call.

    Checks: shapes, dtypes and the static settings raise at trace time. Values
    (pixels finite and in [0, 1], labels in [0, K)) are checked only when `x`
    and `y` are concrete (an eager call); under jit/vmap they are the caller's
    job.

    Args:
      logits_fn: classifier, images [N, H, W, C] -> logits [N, K]. A plain function
        or a `jax.tree_util.Partial` carrying weights as leaves (passed to jit as a
        pytree, so new weights do not recompile). Must treat batch entries
        independently (inference-mode BatchNorm) and be traceable (jit, grad,
        and vmap when the attack is vmapped).
      x: [H, W, C] float in [0, 1] (or a batch [B, H, W, C], see above).
      y: true label: int [] (or [B] ints for a batch).
      size: patch side s, 1 <= s <= min(H, W) (static).
      key: typed PRNG key (`jax.random.key`), [].
      num_locations: random locations (paper: 80; static).
      steps: PGD steps (>= 0; 0 keeps the random initial patch; static).
      step_size: sign-gradient step in pixel units (> 0; a static Python number).
      location_chunk: locations run together per model batch; None = all at once.
        Smaller values bound memory (location_chunk images per forward pass, per
        image) for big models; results do not depend on it.
      return_loss: also return the final loss (see `PatchAttackResult`).

    Returns:
      (image, top_left): image [H, W, C] float32, x with the patch pasted in;
      top_left [2] int32 (row, column) (a leading [B] for a batch). With
      `return_loss`, a `PatchAttackResult`.

    Raises:
      TypeError, ValueError: on a bad argument, naming it.
    """
    logits_fn = _checks.callable_pytree(logits_fn, "logits_fn")
    images, single = _checks.device_image_or_batch(x)
    key = _checks.typed_key(key)
    settings = _settings(
        size, images.shape[-3:-1], num_locations, steps, location_chunk
    )
    step_size = _checks.positive_float(step_size, "step_size")
    one_image = images if single else images[0]
    num_classes = _checks.num_logits(logits_fn, one_image[None], "logits_fn")
    labels = _checks.device_labels(y, images.shape[:-3], num_classes)

    attack = functools.partial(
        _attack_one, logits_fn, step_size=jnp.float32(step_size), settings=settings
    )
    return _one_or_vmapped(attack, images, labels, key, single, return_loss)


def _one_or_vmapped(attack, images, labels, key, single: bool, return_loss: bool):
    """``attack(image, label, key)`` on one image with ``fold_in(key, 0)``, or
    vmapped over a batch with ``fold_in(key, i)`` for image i; the outputs of
    ``patch_attack`` (shared with ``adaptive_patch_attack``)."""
    if single:
        result = attack(images, labels, jax.random.fold_in(key, 0))
    else:
        indices = jnp.arange(images.shape[0])
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
        result = jax.vmap(attack)(images, labels, keys)
    if return_loss:
        return PatchAttackResult(*result)
    return result[0], result[1]


def _settings(size, image_hw, num_locations, steps, location_chunk) -> _Settings:
    """Checks the static budget against the image's ``[H, W]``."""
    size = _checks.patch_size(size, image_hw)
    num_locations = _checks.positive_int(num_locations, "num_locations")
    steps = _checks.positive_int(steps, "steps", minimum=0)
    if location_chunk is None:
        location_chunk = num_locations
    location_chunk = _checks.positive_int(location_chunk, "location_chunk")
    return _Settings(size, num_locations, steps, min(location_chunk, num_locations))
