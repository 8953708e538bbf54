"""A differentiable surrogate of the localiser's prediction map and vote.

Every s x s block is filled with the harmonic fill (the localiser's
differentiable on-device method) and classified; ``changed[b] = 1 -
softmax(f(fill_b(x)))[t]`` is the probability that filling block b moves the
label away from the attacked class t, and the score map is its cross-template
sum, the template of ``localization.joint_vote``: a one-hot ``changed`` gives
the vote's score exactly. See docs/attacks.md ("Vote-aware").
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import localization
from mrs_jax.core import checks as _checks


class SoftVote(NamedTuple):
    """Output of :func:`soft_vote`.

    Attributes:
      changed: [rows, cols] float32 in [0, 1], ``1 - p_t`` of each block's fill.
      score: [rows, cols] float32, the cross-template sum of ``changed``.
    """

    changed: jax.Array
    score: jax.Array


def template_offsets(vote: localization.VoteSettings) -> np.ndarray:
    """[T, 2] int32 map-index offsets of the full cross template (T is
    ``localization.template_size``), as ``joint_vote`` counts them."""
    long_arm = (vote.size - 1) // vote.stride
    short_arm = (vote.size - vote.m) // vote.stride
    r, c = np.meshgrid(
        np.arange(-long_arm, long_arm + 1),
        np.arange(-long_arm, long_arm + 1),
        indexing="ij",
    )
    inside = ((np.abs(r) <= short_arm) & (np.abs(c) <= long_arm)) | (
        (np.abs(r) <= long_arm) & (np.abs(c) <= short_arm)
    )
    return np.stack([r[inside], c[inside]], axis=1).astype(np.int32)


def changed_probability(logits: jax.Array, target: jax.Array) -> jax.Array:
    """[N, K] logits of fills -> [N] soft 'the fill changes the label from t'."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return 1.0 - probs[:, target]


def soft_vote(classify, x, target, size, *, stride=1, m=None) -> SoftVote:
    """Differentiable surrogate of the prediction map and the vote's score map.

    Device function: pure, ``jax.jit``/``jax.vmap``/``jax.grad``-able (in x).
    Every block is filled with the harmonic fill (``localization.harmonic_variant``)
    and classified; ``changed = 1 - softmax(f(fill))[target]`` and the score is
    its cross-template sum, the template of ``localize.joint_vote`` (so a
    one-hot ``changed`` gives exactly the vote's score). Checks: shapes, dtypes
    and the static settings at trace time; pixel values are not read.

    Args:
      classify: images [N, H, W, C] -> logits [N, K]; must treat batch entries
        independently.
      x: [H, W, C] float image in [0, 1].
      target: int [] attacked class t (a Python int or an int array).
      size: block side s (static), 1 <= s <= min(H, W).
      stride: pixel step between positions (static, >= 1).
      m: template arm overlap in [1, s] (static); default ceil(s / 2).

    Returns:
      SoftVote of two [rows, cols] float32 maps.
    """
    classify = _checks.callable_pytree(classify, "classify")
    x = _checks.traced_image(x)
    size, stride = localization.check_block(x.shape, size, stride)
    vote, _ = localization.vote_settings(size, stride=stride, m=m)
    return _soft_vote(classify, x, _target_scalar(target), vote)


@functools.partial(jax.jit, static_argnames="vote")
def _soft_vote(classify, x, target, vote: localization.VoteSettings) -> SoftVote:
    """Jitted core of :func:`soft_vote` (one compile, also under ``grad``)."""
    height, width = x.shape[:2]
    positions = localization.block_positions(height, width, vote.size, vote.stride)
    fills = jax.vmap(localization.harmonic_variant, in_axes=(None, 0, None))(
        x, jnp.asarray(positions), vote.size
    )
    changed = changed_probability(classify(fills), target).reshape(
        localization.grid_shape(height, width, vote.size, vote.stride)
    )
    return SoftVote(changed, localization.joint_vote_scores(changed, vote))


def _target_scalar(target) -> jax.Array:
    """Trace-time check of an attacked class: an int scalar."""
    arr = target if isinstance(target, jax.Array) else np.asarray(target)
    if isinstance(target, bool) or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"target must be an int class, got {type(target).__name__}")
    if arr.shape != ():
        raise ValueError(f"target must be a scalar, got shape {arr.shape}")
    return jnp.asarray(arr, jnp.int32)
