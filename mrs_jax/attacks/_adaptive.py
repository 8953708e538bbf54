"""Adaptive patch attack on localise-then-certify (EOT over fills and noise).

The patch is optimised against the whole defence by expectation over
transformations: J averages a clipped logit margin over the attacked image, its
copies with blocks that overlap the patch filled (so the prediction map stops
singling the patch out) and its copies with smoothing noise inside the dilated
patch. Search and budget as in ``patch_attack`` (the shared ``_engine``). See
docs/attacks.md ("Adaptive").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mrs_jax import localization
from mrs_jax.core import checks as _checks

from ._engine import (
    PatchAttackResult,
    SearchSettings,
    one_or_vmapped,
    random_starts,
    search,
    search_settings,
)

OBJECTIVES = ("eot_inpaint", "eot_noise", "eot_inpaint_noise")
# objective -> (uses the occlusion term, uses the noise term)
_TERMS = {
    "eot_inpaint": (True, False),
    "eot_noise": (False, True),
    "eot_inpaint_noise": (True, True),
}


class _Settings(NamedTuple):
    """Static settings of the jitted core (hashable)."""

    budget: SearchSettings
    num_occlusions: int  # 0 when the objective has no occlusion term
    num_noise: int  # 0 when the objective has no noise term
    dilation: int


def _occlusion_corners(key, top_left, count, size, height, width) -> jax.Array:
    """[count, 2] int32 corners of blocks overlapping, but not equal to, the patch."""
    side = 2 * size - 1
    index = jax.random.randint(key, (count,), 0, side * side - 1)
    index = index + (index >= (side * side) // 2)  # skip the centre offset (0, 0)
    offsets = jnp.stack([index // side, index % side], axis=1) - (size - 1)
    corners = top_left[None, :] + offsets
    upper = jnp.array([height - size, width - size])
    return jnp.clip(corners, 0, upper).astype(jnp.int32)


def _square_mask(top_left, size, dilation, height, width) -> jax.Array:
    """[H, W] float32: 1 on the patch grown by `dilation`, clipped to the image."""
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    inside = (
        (rows >= top_left[0] - dilation)
        & (rows < top_left[0] + size + dilation)
        & (cols >= top_left[1] - dilation)
        & (cols < top_left[1] + size + dilation)
    )
    return inside.astype(jnp.float32)


def _variants(x_adv, top_left, key, sigma, settings: _Settings) -> jax.Array:
    """The images J is averaged over, for one location.

    Returns:
      [1 + num_occlusions + num_noise, H, W, C]: x_adv, its occluded-and-filled
      copies, its noisy copies.
    """
    height, width, channels = x_adv.shape
    size = settings.budget.size
    parts = [x_adv[None]]
    occlusion_key, noise_key = jax.random.split(key)
    if settings.num_occlusions:
        corners = _occlusion_corners(
            occlusion_key, top_left, settings.num_occlusions, size, height, width
        )
        fill = jax.vmap(localization.harmonic_variant, in_axes=(None, 0, None))
        parts.append(fill(x_adv, corners, size))
    if settings.num_noise:
        mask = _square_mask(top_left, size, settings.dilation, height, width)
        noise = jax.random.normal(
            noise_key, (settings.num_noise, height, width, channels), x_adv.dtype
        )
        parts.append(x_adv[None] + sigma * mask[None, :, :, None] * noise)
    return jnp.concatenate(parts)


def _gain(logits: jax.Array, label: jax.Array, kappa: jax.Array) -> jax.Array:
    """[..., K] logits -> [...] min(best wrong logit - true logit, kappa)."""
    logits = logits.astype(jnp.float32)
    true = jnp.take_along_axis(logits, label[..., None], axis=-1)[..., 0]
    is_true = jnp.arange(logits.shape[-1]) == label[..., None]
    wrong = jnp.max(jnp.where(is_true, -jnp.inf, logits), axis=-1)
    return jnp.minimum(wrong - true, kappa)


def _objective(gains: jax.Array, weights: jax.Array, settings: _Settings):
    """[..., V] per-variant gains -> [...] J (the weighted sum of term means)."""
    n_occ = settings.num_occlusions
    total = weights[0] * gains[..., 0]
    if n_occ:
        total += weights[1] * jnp.mean(gains[..., 1 : 1 + n_occ], axis=-1)
    if settings.num_noise:
        total += weights[2] * jnp.mean(gains[..., 1 + n_occ :], axis=-1)
    return total


@functools.partial(jax.jit, static_argnames="settings")
def _attack_one(
    logits_fn, image, label, key, step_size, sigma, weights, kappa, settings
):
    """Jitted core for one image [H, W, C], label [] and typed key []."""
    location_key, init_key, sample_key = jax.random.split(key, 3)
    starts = random_starts(location_key, init_key, image.shape, settings.budget)
    per_location = jax.vmap(_variants, in_axes=(0, 0, 0, None, None))

    def objective(x_adv, top_lefts, extras, keys):  # [c, H, W, C] -> [c]
        variants = per_location(x_adv, top_lefts, keys, sigma, settings)
        logits = logits_fn(variants.reshape((-1,) + image.shape))
        logits = logits.reshape(variants.shape[:2] + logits.shape[-1:])
        gains = _gain(logits, label[None, None], kappa)
        return _objective(gains, weights, settings)

    found = search(
        objective, image, starts, settings.budget, step_size, sample_key=sample_key
    )
    return found.image[0], found.top_left[0], found.score[0]


def adaptive_patch_attack(
    classify: Callable[[jax.Array], jax.Array],
    x: Any,
    y: Any,
    size: int,
    *,
    key: jax.Array,
    num_locations: int = 80,
    steps: int,
    step_size: float,
    objective: str = "eot_noise",
    sigma: float = 0.5,
    dilation: int = 3,
    num_occlusions: int = 8,
    num_noise: int = 4,
    base_weight: float = 1.0,
    inpaint_weight: float = 1.0,
    noise_weight: float = 1.0,
    kappa: float = 5.0,
    location_chunk: int | None = None,
    return_loss: bool = False,
) -> tuple[jax.Array, jax.Array] | PatchAttackResult:
    """s x s patch attack against localisation and masked smoothing.

    Maximises (docs/attacks.md, "Adaptive")::

        J = base_weight    * g(x_adv)
          + inpaint_weight * mean_o g(harmonic_fill(x_adv, block_o))
          + noise_weight   * mean_n g(x_adv + M * e_n),   e_n ~ N(0, sigma^2 I)

    with ``g = min(best wrong logit - true logit, kappa)``; ``block_o`` are s x s
    blocks that overlap the patch but are not it, M the patch grown by
    ``dilation``. Each step draws fresh fills and noise; the kept location's J
    is re-estimated on fresh samples.

    A drop-in for ``mrs_jax.patch_attack``: same inputs, budget and outputs, and
    like it a device function written for one image, attacked with
    ``fold_in(key, 0)``: ``jax.jit`` it and ``jax.vmap`` it over images, labels and
    keys (the other arguments static); image b of that batch equals the one-image
    call with ``keys[b]``. ``x`` may also be a batch [B, H, W, C]: the same vmap
    with image i keyed by ``fold_in(key, i)``. Cost per step:
    ``1 + num_occlusions + num_noise`` forward and backward passes per location
    (terms the objective does not use are not computed).

    Checks: shapes, dtypes and the static settings raise at trace time; values
    (pixels finite and in [0, 1], labels in [0, K)) only when ``x`` and ``y`` are
    concrete (an eager call); under jit/vmap they are the caller's job.

    Args:
      classify: base classifier, images [N, H, W, C] -> logits [N, K]; plain
        function or ``jax.tree_util.Partial`` carrying weights. Must treat batch
        entries independently (inference-mode BatchNorm).
      x: [H, W, C] float in [0, 1] (or a batch [B, H, W, C], see above).
      y: true label: int [] (or [B] ints for a batch).
      size: patch side s, 1 <= s <= min(H, W) (also the localiser's block size).
        This and every argument below are static Python values.
      key: typed PRNG key (``jax.random.key``).
      num_locations: random locations per image (paper: 80).
      steps: sign-gradient ascent steps on J (>= 0).
      step_size: step in pixel units (> 0).
      objective: one of ``OBJECTIVES``, which terms J has: ``"eot_inpaint"``
        (base + fills), ``"eot_noise"`` (base + noise), ``"eot_inpaint_noise"``
        (all three).
      sigma: smoothing noise std in [0, 1] pixel units (the job's ``sigma``).
      dilation: pixels the noise mask extends past the patch (the localiser's).
      num_occlusions: partial occlusions per location and step (>= 1).
      num_noise: noise draws per location and step (>= 1).
      base_weight, inpaint_weight, noise_weight: weights (>= 0) of the terms; a term
        the objective lacks is skipped whatever its weight.
      kappa: clip of the margin (> 0), in logits.
      location_chunk: locations per model batch; None = all. Results do not depend
        on it; memory is chunk * (1 + occlusions + noise) images per image.
      return_loss: also return the final J of the kept location.

    Returns:
      (image, top_left): image [H, W, C] float32 in [0, 1], x with the patch
      pasted in; top_left [2] int32 (row, column) (a leading [B] for a batch).
      With ``return_loss``, a ``PatchAttackResult`` whose ``loss`` is J ([] or
      [B]; greater = stronger).

    Raises:
      TypeError, ValueError: on a bad argument, naming it.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    classify = _checks.callable_pytree(classify, "classify")
    images, single = _checks.device_image_or_batch(x)
    settings = _settings(
        images.shape[-3:-1],
        objective,
        size=size,
        num_locations=num_locations,
        steps=steps,
        location_chunk=location_chunk,
        dilation=dilation,
        num_occlusions=num_occlusions,
        num_noise=num_noise,
    )
    step_size = _checks.positive_float(step_size, "step_size")
    sigma = _checks.positive_float(sigma, "sigma")
    kappa = _checks.positive_float(kappa, "kappa")
    weights = _weights(objective, base_weight, inpaint_weight, noise_weight)
    key = _checks.typed_key(key)
    one_image = images if single else images[0]
    num_classes = _checks.num_logits(classify, one_image[None], "classify")
    labels = _checks.device_labels(y, images.shape[:-3], num_classes)

    attack = functools.partial(
        _attack_one,
        classify,
        step_size=jnp.float32(step_size),
        sigma=jnp.float32(sigma),
        weights=weights,
        kappa=jnp.float32(kappa),
        settings=settings,
    )
    return one_or_vmapped(attack, images, labels, key, single, return_loss)


def _settings(
    image_hw,
    objective,
    *,
    size,
    num_locations,
    steps,
    location_chunk,
    dilation,
    num_occlusions,
    num_noise,
) -> _Settings:
    """Checks the static budget against the image's ``[H, W]``; a term the
    objective lacks gets 0 samples."""
    use_inpaint, use_noise = _TERMS[objective]
    num_occlusions = _checks.positive_int(num_occlusions, "num_occlusions")
    num_noise = _checks.positive_int(num_noise, "num_noise")
    return _Settings(
        budget=search_settings(size, image_hw, num_locations, steps, location_chunk),
        num_occlusions=num_occlusions if use_inpaint else 0,
        num_noise=num_noise if use_noise else 0,
        dilation=_checks.positive_int(dilation, "dilation", minimum=0),
    )


def _weights(objective, base_weight, inpaint_weight, noise_weight) -> jax.Array:
    """[3] float32 term weights (>= 0), refusing an objective whose terms all
    weigh 0."""
    weights = [
        _checks.nonnegative_float(w, name)
        for w, name in (
            (base_weight, "base_weight"),
            (inpaint_weight, "inpaint_weight"),
            (noise_weight, "noise_weight"),
        )
    ]
    use_inpaint, use_noise = _TERMS[objective]
    if weights[0] + weights[1] * use_inpaint + weights[2] * use_noise == 0:
        raise ValueError(f"all weights of objective {objective!r} are 0")
    return jnp.asarray(weights, jnp.float32)
