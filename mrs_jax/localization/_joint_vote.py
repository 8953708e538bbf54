"""Joint voting on a prediction map (paper section 3.2).

The attacked class c_t is the most frequent label of the map; each candidate
position scores the positions with another label inside a cross-shaped template
around it; the best-scoring block is the patch's place. Abstains when the
positions scoring above tau form two or more 8-connected regions; when no block
changes the prediction the reason is ``no_change`` and the tie-break picks the
central block. ``joint_vote`` is a device function for one map: ``jax.vmap`` it
over a batch. Template, defaults and evidence: ``docs/localization.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import mrs_jax.localization._inpaint as inpaint
from mrs_jax.core import checks as _checks

REASONS = ("ok", "no_change", "multiple_regions")


REASON_OK, REASON_NO_CHANGE, REASON_MULTIPLE = 0, 1, 2


# tau defaults to this fraction of the largest template size (see joint_vote).
TAU_FRACTION = 0.5


class VoteSettings(NamedTuple):
    """Static joint-voting settings (hashable, a jit static argument).

    tau is not here: it is a traced argument, so changing it does not recompile.
    """

    size: int
    stride: int
    m: int


class VoteResult(NamedTuple):
    """Output of ``joint_vote``.

    Attributes:
      score_map: [rows, cols] int32 votes per candidate position.
      attacked_class: [] int32 most frequent label c_t (smallest label on ties).
      top_left: [2] int32 pixel position (i, j) of the best block. When no block
        changed the prediction the score map is all zero and the tie-break (the
        maximum nearest the centroid of all maxima) picks the central position.
      abstain: [] bool, True when the positions scoring above tau form two or more
        8-connected components.
      reason: [] int32 code into ``REASONS``.
      n_components: [] int32 number of 8-connected components above tau.
    """

    score_map: jax.Array
    attacked_class: jax.Array
    top_left: jax.Array
    abstain: jax.Array
    reason: jax.Array
    n_components: jax.Array


def reason_name(code) -> str:
    """Maps a reason code (int or 0-d array) to its string."""
    return REASONS[int(code)]


# ------------------------------------------------------------------------ settings


def template_size(size: int, stride: int, m: int) -> int:
    """Number of positions in a full (unclipped) cross template, in map indices."""
    long_arm = 2 * ((size - 1) // stride) + 1
    short_arm = 2 * ((size - m) // stride) + 1
    return 2 * long_arm * short_arm - short_arm * short_arm


def vote_settings(size, *, stride=1, m=None, tau=None) -> tuple[VoteSettings, float]:
    """Validates joint-voting settings and fills in the defaults.

    Defaults: ``m = ceil(s / 2)`` and ``tau = TAU_FRACTION * template_size``; see
    ``joint_vote`` for why.

    Returns:
      (settings, tau).
    """
    size = inpaint.check_int(size, "size", 1)
    stride = inpaint.check_int(stride, "stride", 1)
    m = (size + 1) // 2 if m is None else inpaint.check_int(m, "m", 1, size)
    if tau is None:
        tau = TAU_FRACTION * template_size(size, stride, m)
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.number)):
        raise TypeError(f"tau must be a number, got {type(tau).__name__}")
    tau = float(tau)
    if not math.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be finite and >= 0, got {tau}")
    return VoteSettings(size, stride, m), tau


# ------------------------------------------------------------------- voting (jit)


def _mode(labels: jax.Array) -> jax.Array:
    """Most frequent value of a 1-D int array, smallest value on ties."""
    ordered = jnp.sort(labels)
    starts = jnp.concatenate([jnp.array([True]), ordered[1:] != ordered[:-1]])
    run = jnp.cumsum(starts) - 1
    counts = jax.ops.segment_sum(jnp.ones_like(run), run, num_segments=labels.size)
    best = jnp.argmax(counts)
    return ordered[jnp.argmax(run == best)]


def _box_counts(changed: jax.Array, half_rows: int, half_cols: int) -> jax.Array:
    """Counts of ``changed`` in the (2 hr + 1) x (2 hc + 1) box around each cell.

    Uses a summed-area table: exact integers, O(rows * cols) for any box.
    """
    rows, cols = changed.shape
    table = jnp.pad(jnp.cumsum(jnp.cumsum(changed, 0), 1), ((1, 0), (1, 0)))
    r = jnp.arange(rows)
    c = jnp.arange(cols)
    r0 = jnp.clip(r - half_rows, 0, rows)[:, None]
    r1 = jnp.clip(r + half_rows + 1, 0, rows)[:, None]
    c0 = jnp.clip(c - half_cols, 0, cols)[None, :]
    c1 = jnp.clip(c + half_cols + 1, 0, cols)[None, :]
    return table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]


def joint_vote_scores(changed: jax.Array, settings: VoteSettings) -> jax.Array:
    """[rows, cols] int32 cross-template counts of changed positions."""
    long_arm = (settings.size - 1) // settings.stride
    short_arm = (settings.size - settings.m) // settings.stride
    horizontal = _box_counts(changed, short_arm, long_arm)
    vertical = _box_counts(changed, long_arm, short_arm)
    centre = _box_counts(changed, short_arm, short_arm)
    return horizontal + vertical - centre


def _central_argmax(score: jax.Array) -> jax.Array:
    """Flat index of the maximum nearest the centroid of all maxima.

    Scores often have plateaus (a patch whose changed region is smaller than the
    template ties over a square of positions); the first maximum in row-major
    order would sit at the plateau's corner, the central one on the patch.
    """
    rows, cols = score.shape
    is_max = (score == jnp.max(score)).ravel()
    r = (jnp.arange(rows * cols) // cols).astype(jnp.float32)
    c = (jnp.arange(rows * cols) % cols).astype(jnp.float32)
    count = jnp.sum(is_max)
    r0 = jnp.sum(jnp.where(is_max, r, 0)) / count
    c0 = jnp.sum(jnp.where(is_max, c, 0)) / count
    dist = jnp.where(is_max, (r - r0) ** 2 + (c - c0) ** 2, jnp.inf)
    return jnp.argmin(dist)


def _count_components(active: jax.Array) -> jax.Array:
    """Number of 8-connected components of a bool map, fully on device.

    Each active cell starts with its own id; ids spread by 3 x 3 max-pooling inside
    the active set until nothing changes, so each component ends with its largest
    id, held by exactly one cell (its root).
    """
    ids = jnp.arange(1, active.size + 1, dtype=jnp.int32).reshape(active.shape)
    start = jnp.where(active, ids, 0)

    def grow(state):
        labels, _ = state
        pooled = jax.lax.reduce_window(labels, 0, jax.lax.max, (3, 3), (1, 1), "SAME")
        new = jnp.where(active, pooled, 0)
        return new, jnp.any(new != labels)

    labels, _ = jax.lax.while_loop(lambda s: s[1], grow, (start, jnp.array(True)))
    return jnp.sum(active & (labels == ids)).astype(jnp.int32)


def vote_with_settings(prediction_map, tau, settings: VoteSettings) -> VoteResult:
    """Joint voting on a ``[gh, gw]`` prediction map with resolved settings
    (:func:`vote_settings`); jittable, ``settings`` static, no checks of its own
    (:func:`joint_vote` is the checked entry point)."""
    labels = prediction_map.astype(jnp.int32)
    attacked = _mode(labels.ravel())
    changed = (labels != attacked).astype(jnp.int32)
    score = joint_vote_scores(changed, settings).astype(jnp.int32)
    best = _central_argmax(score)
    cols = labels.shape[1]
    no_change = ~jnp.any(changed > 0)
    top_left = jnp.stack([best // cols, best % cols]).astype(jnp.int32)
    top_left = top_left * settings.stride
    n_components = _count_components(score > tau)
    abstain = (~no_change) & (n_components >= 2)
    reason = jnp.where(
        no_change, REASON_NO_CHANGE, jnp.where(abstain, REASON_MULTIPLE, REASON_OK)
    ).astype(jnp.int32)
    return VoteResult(score, attacked, top_left, abstain, reason, n_components)


def _check_map(prediction_map) -> None:
    """Trace-time checks of a prediction map: rank 2, no empty axis, integers."""
    if not hasattr(prediction_map, "shape") or not hasattr(prediction_map, "dtype"):
        prediction_map = np.asarray(prediction_map)
    if len(prediction_map.shape) != 2 or min(prediction_map.shape) < 1:
        raise ValueError(
            f"prediction_map must have shape [rows, cols], got {prediction_map.shape}"
        )
    if not jnp.issubdtype(prediction_map.dtype, jnp.integer):
        raise TypeError(
            f"prediction_map must hold integer labels, got {prediction_map.dtype}"
        )


def _check_tau_array(tau) -> jax.Array:
    """A tau given as an array (possibly traced): a real scalar, checked at trace
    time; finite and >= 0 checked only when concrete."""
    real = jnp.issubdtype(tau.dtype, jnp.floating) or jnp.issubdtype(
        tau.dtype, jnp.integer
    )
    if tau.shape != () or not real:
        raise TypeError(
            f"tau must be a real scalar, got shape {tau.shape} dtype {tau.dtype}"
        )
    if not _checks.is_traced(tau):
        value = float(tau)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"tau must be finite and >= 0, got {value}")
    return jnp.asarray(tau, jnp.float32)


_joint_vote_jit = jax.jit(vote_with_settings, static_argnames="settings")


def joint_vote(prediction_map, size, *, stride=1, m=None, tau=None) -> VoteResult:
    """Joint voting over a prediction map (``docs/localization.md``).

    Finds the attacked class (the most frequent label), scores each position
    by the changed positions in its cross-shaped template, locates the maximum
    nearest the centroid of all maxima and decides abstention.

    Device function: pure, works under ``jax.jit`` and ``jax.vmap`` (e.g. over
    a batch of prediction maps, or of ``tau`` values) and inside a caller's
    jitted code. size, stride and m are static; tau may be a Python number or a
    (traced) scalar array; the connected-component count for abstention runs on
    device as well. Checks: the map's rank and dtype and the static settings at
    trace time (TypeError/ValueError naming the argument); tau's value (finite,
    >= 0) only when it is concrete.

    Defaults: ``m = ceil(s / 2)``, the middle between the full square (which
    weighs sparse misclassifications in clean areas more) and a one-block plus
    (which the paper says "can be easily defeated"); ``tau`` = half of the full
    template, which an isolated misclassified position cannot reach but a patch
    broken by any overlap exceeds. Their justification and the measurements
    behind them are in ``docs/localization.md``.

    Args:
      prediction_map: [rows, cols] int labels of the inpainted variants, row r and
        column c holding the block at pixel (r * stride, c * stride).
      size: block side s in pixels.
      stride: pixel step between positions; arms are measured in pixels.
      m: arm overlap in [1, s]; default ceil(s / 2).
      tau: score threshold >= 0 for abstention (a number or a scalar array);
        default half of ``template_size(size, stride, m)``.

    Returns:
      VoteResult; the location is the maximum nearest the centroid of all maxima
      (first in row-major order among equally near ones).

    Raises:
      TypeError, ValueError: naming the argument, for a wrong map rank or dtype,
        a bad static setting, or a concrete tau that is negative or not finite.

    Examples:
      A 2 x 2 patch at pixel (3, 4) fools the classifier into class 7 except
      where the inpainted block touches it:

      >>> import numpy as np
      >>> from mrs_jax.localization import joint_vote
      >>> prediction_map = np.full((8, 8), 7, np.int32)
      >>> prediction_map[2:5, 3:6] = 2  # the blocks overlapping the patch
      >>> vote = joint_vote(prediction_map, 2)
      >>> print(int(vote.attacked_class), vote.top_left.tolist(), bool(vote.abstain))
      7 [3, 4] False
    """
    _check_map(prediction_map)
    if isinstance(tau, (jax.Array, np.ndarray)):
        settings, _ = vote_settings(size, stride=stride, m=m)
        tau = _check_tau_array(tau)
    else:
        settings, tau = vote_settings(size, stride=stride, m=m, tau=tau)
    return _joint_vote_jit(jnp.asarray(prediction_map), tau, settings)
