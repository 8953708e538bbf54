"""PGD patch attack on the base classifier (paper Section 4.1, MRS_SPEC s. 5).

l_inf = 1 inside an s x s square: the patch pixels may take any value in [0, 1].
The objective is the cross-entropy of the true label, ascended by the shared
search (``_engine``) from ``num_locations`` random starts; the location with the
greatest final loss is kept. See docs/attacks.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mrs_jax.core import checks as _checks

from ._engine import (
    PatchAttackResult,
    SearchSettings,
    one_or_vmapped,
    random_starts,
    search,
    search_settings,
)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits [..., K], labels [...] int -> [...] cross-entropy (float32)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


@functools.partial(jax.jit, static_argnames="settings")
def _attack_one(
    logits_fn: jax.tree_util.Partial,
    image: jax.Array,
    label: jax.Array,
    key: jax.Array,
    step_size: jax.Array,
    settings: SearchSettings,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Jitted core for one image [H, W, C], label [] and typed key []."""
    location_key, init_key = jax.random.split(key)
    starts = random_starts(location_key, init_key, image.shape, settings)

    def loss(x_adv, top_lefts, extras, keys):  # [c, H, W, C] -> [c]
        return _cross_entropy(logits_fn(x_adv), label[None])

    found = search(loss, image, starts, settings, step_size)
    return found.image[0], found.top_left[0], found.score[0]


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
      `return_loss`, a `PatchAttackResult` whose `loss` is the cross-entropy of
      the true label at `image`.

    Raises:
      TypeError, ValueError: on a bad argument, naming it.
    """
    logits_fn = _checks.callable_pytree(logits_fn, "logits_fn")
    images, single = _checks.device_image_or_batch(x)
    key = _checks.typed_key(key)
    settings = search_settings(
        size, images.shape[-3:-1], num_locations, steps, location_chunk
    )
    step_size = _checks.positive_float(step_size, "step_size")
    one_image = images if single else images[0]
    num_classes = _checks.num_logits(logits_fn, one_image[None], "logits_fn")
    labels = _checks.device_labels(y, images.shape[:-3], num_classes)

    attack = functools.partial(
        _attack_one, logits_fn, step_size=jnp.float32(step_size), settings=settings
    )
    return one_or_vmapped(attack, images, labels, key, single, return_loss)
