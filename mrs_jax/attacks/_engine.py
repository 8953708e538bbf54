"""The search every patch attack runs: random starts, sign-PGD, keep the best.

An attack is an objective J (the attacker's gain, one value per location) and
the per-location extras it needs; the search draws ``num_locations`` random
top-left positions and initial patches, takes ``steps`` sign-gradient ascent
steps of J on each patch with projection onto [0, 1] (``lax.scan``; locations
in chunks of ``location_chunk``, one model batch each), and keeps the ``keep``
locations with the greatest final J. Pixels outside the patch never change.
Written for one image: the attacks ``jax.vmap`` it over images.
See docs/attacks.md ("The search").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mrs_jax.core import checks as _checks

# objective(x_adv [c, H, W, C], top_left [c, 2], extras [c, ...], keys [c] | None)
# -> J [c]: the chunk's images with their patches pasted in, and J of each.
Objective = Callable[[jax.Array, jax.Array, Any, Any], jax.Array]


class PatchAttackResult(NamedTuple):
    """Output of ``patch_attack`` / ``adaptive_patch_attack(..., return_loss=True)``.

    Attributes:
      image: [H, W, C] (or [B, H, W, C]) float32 in [0, 1], the input with the patch.
      top_left: [2] (or [B, 2]) int32, (row, column) of the patch's top-left pixel.
      loss: [] (or [B]) float32, the attack's objective at `image` (greater =
        stronger).
    """

    image: jax.Array
    top_left: jax.Array
    loss: jax.Array


class SearchSettings(NamedTuple):
    """The search's checked static budget (hashable: a static jit argument)."""

    size: int
    num_locations: int
    steps: int
    location_chunk: int
    keep: int = 1

    @property
    def padded(self) -> int:
        """Locations rounded up to whole chunks."""
        chunk = self.location_chunk
        return -(-self.num_locations // chunk) * chunk


class Starts(NamedTuple):
    """Random starting points: top_left [L, 2] int32, patch [L, s, s, C] float32."""

    top_left: jax.Array
    patch: jax.Array


class Found(NamedTuple):
    """The kept locations, greatest J first: image [k, H, W, C] (the input with
    each patch pasted in), top_left [k, 2] int32, score [k] float32 (J)."""

    image: jax.Array
    top_left: jax.Array
    score: jax.Array


def search_settings(
    size, image_hw, num_locations, steps, location_chunk, keep=1
) -> SearchSettings:
    """Checks the budget against the image's ``[H, W]``; ``location_chunk``
    None means all locations at once."""
    size = _checks.patch_size(size, image_hw)
    num_locations = _checks.positive_int(num_locations, "num_locations")
    steps = _checks.positive_int(steps, "steps", minimum=0)
    if location_chunk is None:
        location_chunk = num_locations
    location_chunk = _checks.positive_int(location_chunk, "location_chunk")
    return SearchSettings(
        size, num_locations, steps, min(location_chunk, num_locations), keep
    )


def paste(image: jax.Array, patch: jax.Array, top_left: jax.Array) -> jax.Array:
    """Writes `patch` [s, s, C] into `image` [H, W, C] at `top_left` [2]."""
    return lax.dynamic_update_slice(image, patch, (top_left[0], top_left[1], 0))


_paste_each = jax.vmap(paste, in_axes=(None, 0, 0))


def random_starts(location_key, init_key, image_shape, settings) -> Starts:
    """``num_locations`` top-lefts uniform over the positions with the patch
    fully inside the image (duplicates possible), and patches uniform in [0, 1]."""
    height, width, channels = image_shape
    size, count = settings.size, settings.num_locations
    upper = jnp.array([height - size + 1, width - size + 1])
    top_lefts = jax.random.randint(location_key, (count, 2), 0, upper)
    patches = jax.random.uniform(init_key, (count, size, size, channels))
    return Starts(top_lefts, patches)


def folded_keys(key: jax.Array, count: int) -> jax.Array:
    """[count] keys, ``fold_in(key, i)`` for i < count."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(count))


_step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))


def search(
    objective: Objective,
    image: jax.Array,
    starts: Starts,
    settings: SearchSettings,
    step_size: jax.Array,
    *,
    extras: Any = (),
    sample_key: jax.Array | None = None,
) -> Found:
    """Sign-PGD on J from every start; the ``settings.keep`` best locations.

    Device function for one image [H, W, C]. Location l draws its step-t samples
    (t < steps; t = steps for the final, fresh estimate of J) from
    ``fold_in(fold_in(sample_key, l), t)``, so results do not depend on the
    chunk; without ``sample_key`` the objective gets ``keys=None``.

    Args:
      objective: J of a chunk of locations (``Objective``); its gradient in each
        patch must be that patch's own (models treat batch entries
        independently: inference-mode BatchNorm).
      image: [H, W, C] float32 in [0, 1].
      starts: ``num_locations`` starts (``random_starts``).
      settings: the budget; ``keep`` <= ``num_locations``.
      step_size: [] float32 sign-gradient step in pixel units.
      extras: pytree of per-location arrays [num_locations, ...] for J.
      sample_key: typed key of J's random samples, or None.

    Returns:
      ``Found``: the ``keep`` locations with the greatest final J, ties to the
      first drawn.
    """
    pad = settings.padded - settings.num_locations
    padded = jax.tree.map(
        lambda a: jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)),
        (starts.patch, starts.top_left, extras),
    )
    keys = None if sample_key is None else folded_keys(sample_key, settings.padded)
    chunk = settings.location_chunk
    chunks = jax.tree.map(
        lambda a: a.reshape((-1, chunk) + a.shape[1:]), padded + (keys,)
    )
    run = _chunk_runner(objective, image, settings.steps, step_size)
    patches, scores = lax.map(run, chunks)
    return _keep_best(image, patches, padded[1], scores, settings)


def _chunk_runner(objective, image, steps, step_size):
    """``run((patches, top_lefts, extras, keys))`` of one chunk -> (final
    patches [c, s, s, C], final J [c])."""

    def gain(patches, top_lefts, extras, keys):
        return objective(
            _paste_each(image, patches, top_lefts), top_lefts, extras, keys
        )

    def run(part):
        patches, top_lefts, extras, keys = part

        # The model sees every location as its own batch entry, so the gradient
        # of the summed J is each patch's own gradient.
        def step(patch, index):
            keys_now = None if keys is None else _step_keys(keys, index)
            total = lambda p: gain(p, top_lefts, extras, keys_now).sum()
            grad = jax.grad(total)(patch)
            return jnp.clip(patch + step_size * jnp.sign(grad), 0.0, 1.0), None

        indices = None if keys is None else jnp.arange(steps)
        patches, _ = lax.scan(step, patches, indices, length=steps)
        final_keys = None if keys is None else _step_keys(keys, steps)
        return patches, gain(patches, top_lefts, extras, final_keys)

    return run


def _keep_best(image, patches, top_lefts, scores, settings) -> Found:
    """The ``keep`` greatest valid scores (padding excluded), pasted."""
    patches = patches.reshape((-1,) + patches.shape[2:])
    scores = scores.reshape(-1)
    valid = jnp.arange(settings.padded) < settings.num_locations
    scores = jnp.where(valid, scores, -jnp.inf)
    best_scores, best = lax.top_k(scores, settings.keep)  # ties -> first drawn
    corners = top_lefts[best].astype(jnp.int32)
    return Found(_paste_each(image, patches[best], corners), corners, best_scores)


def one_or_vmapped(attack, images, labels, key, single: bool, return_loss: bool):
    """``attack(image, label, key)`` -> (image, top_left, loss) on one image with
    ``fold_in(key, 0)``, or vmapped over a batch with ``fold_in(key, i)`` for
    image i; the outputs of ``patch_attack`` and ``adaptive_patch_attack``."""
    if single:
        result = attack(images, labels, jax.random.fold_in(key, 0))
    else:
        keys = folded_keys(key, images.shape[0])
        result = jax.vmap(attack)(images, labels, keys)
    if return_loss:
        return PatchAttackResult(*result)
    return result[0], result[1]
