"""Patch localisation by joint voting (paper section 3.2, spec section 4).

Every s x s block of the image is inpainted in turn and classified (the prediction
map); the attacked class c_t is the most frequent label; C is the set of positions
whose label differs; each candidate position scores the number of C positions in a
cross-shaped template around it; the best-scoring block, grown by ``dilation``
pixels, is the mask.

Positions and stride. A position is the top-left pixel (i, j) of a block, with
``i = r * stride`` for map row r (likewise j and column c), so the prediction and
score maps are [rows, cols] = [(H - s) // stride + 1, (W - s) // stride + 1]. The
template is defined in pixels exactly as in the spec: horizontal arm
``|i' - i| <= s - m`` and ``|j' - j| <= s - 1``, vertical arm ``|i' - i| <= s - 1`` and
``|j' - j| <= s - m``. In map indices that is ``|r' - r| <= (s - m) // stride`` and
``|c' - c| <= (s - 1) // stride`` (and the transpose). With stride 1 it is the spec's
template verbatim.

Location. The located block is the maximum of the score. Scores have plateaus
(a patch whose changed region is smaller than the template ties over a square of
positions, and at an image border the clipped template ties over a wider area), so
among all maxima the one nearest their centroid is taken rather than the first in
row-major order, which would sit at a plateau's corner. Templates are clipped at the
map border (only existing positions vote, as in the spec). Measured consequence
(tests, and a planted patch broken by any overlap): with s = 5 the mask always
covers the patch, borders included; for larger s a patch in a corner can be located
up to about s / 2 pixels off, so use dilation >= s / 2 when that matters. A clipped
template also scores lower, so a patch at a corner may stay below tau and not count
towards abstention.

Batches. ``localize`` is a host driver that takes one image or a batch; one
image is the batch of one. The harmonic path is one device program for the whole
batch (fill, classify, vote, mask), the Telea path fills on host threads and
votes in one vmapped program; a batch returns the list of the per-image results.
``joint_vote`` (and ``mrs_jax.prediction_map`` with the harmonic fill) are device
functions for one map (image): ``jax.vmap`` them over a batch.

No change. When no block changes the prediction (C is empty) there is nothing to
locate: the result has ``reason == "no_change"``, ``abstain == False``, an all-False
mask and ``top_left == (-1, -1)``. Callers decide what an empty mask means for them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax.core import checks as _checks
from mrs_jax.localization import _inpaint as inpaint
from mrs_jax.localization._prediction_maps import (
    check_map_settings,
    harmonic_batch_size,
    harmonic_maps,
    pair_chunks,
    place_pairs,
    telea_maps,
)

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


class LocalizeResult(NamedTuple):
    """Output of ``localize``.

    Attributes:
      mask: [H, W] bool, the located block grown by ``dilation`` pixels, clipped to
        the image. On ``no_change`` it is the block the tie-break picks (the
        central position), as the paper's algorithm takes the arg max of the score
        map whatever it is and certifies there (MRS_SPEC section 4, step 6).
      top_left: [2] int32 pixel position of the located block.
      score_map: [rows, cols] int32 joint-voting scores.
      prediction_map: [rows, cols] int32 labels of the inpainted variants.
      attacked_class: [] int32.
      abstain: [] bool.
      reason: [] int32 code; ``reason_name`` gives the string.
      n_components: [] int32 components above tau.
    """

    mask: jax.Array
    top_left: jax.Array
    score_map: jax.Array
    prediction_map: jax.Array
    attacked_class: jax.Array
    abstain: jax.Array
    reason: jax.Array
    n_components: jax.Array

    @property
    def reason_name(self) -> str:
        """Host-side name of ``reason``: "ok", "no_change" or "multiple_regions"."""
        return reason_name(self.reason)


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


def block_mask(top_left, size, dilation, height, width) -> jax.Array:
    """[H, W] bool: the block at top_left grown by dilation, clipped to the image."""
    i, j = top_left[0], top_left[1]
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    inside = (
        (rows >= i - dilation)
        & (rows < i + size + dilation)
        & (cols >= j - dilation)
        & (cols < j + size + dilation)
    )
    return inside


def _vote_all(prediction_maps, tau, settings, dilation, shape):
    """Vote and mask of each of B prediction maps ``[B, rows, cols]`` (vmap)."""

    def one(prediction_map):
        vote = vote_with_settings(prediction_map, tau, settings)
        return block_mask(vote.top_left, settings.size, dilation, *shape), vote

    return jax.vmap(one)(prediction_maps)


_vote_all_jit = jax.jit(_vote_all, static_argnames=("settings", "dilation", "shape"))


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


def joint_vote(prediction_map, size, *, stride=1, m=None, tau=None) -> VoteResult:
    """Joint voting over a prediction map (spec section 4, steps 2 to 6).

    Device function: pure, works under ``jax.jit`` and ``jax.vmap`` (e.g. over
    a batch of prediction maps, or of ``tau`` values) and inside a caller's
    jitted code. size, stride and m are static; tau may be a Python number or a
    (traced) scalar array; the connected-component count for abstention runs on
    device as well. Checks: the map's rank and dtype and the static settings at
    trace time (TypeError/ValueError naming the argument); tau's value (finite,
    >= 0) only when it is concrete.

    Defaults and why:
      m = ceil(s / 2): a template cell votes when its block hides at least half of
        the candidate's rows (or columns) and any of its columns (rows). m = 1 (the
        full square) also collects votes from blocks that only graze the candidate,
        so sparse clean-area misclassifications weigh more; m = s (a plus one
        position wide) comes closest to the template shrunk to the central block
        that the paper says "can be easily defeated". Half is the middle.
      tau = TAU_FRACTION * template_size = half of the full template. An isolated
        misclassified position adds at most one vote anywhere, so passing tau
        needs half of a template footprint misclassified, which clean regions
        rarely produce (paper section 3.3); a patch broken by any overlap gives the
        whole template at its position, so two such patches far apart give two
        components. A weaker patch that survives until half its rows and columns
        are hidden scores about a third of the template: it is still located (the
        location does not depend on tau) but two of them do not cause abstention.
      Measured (benchmarks/RESULTS.md section 4, PGD patches on digits, s = 5, 16
        fooled images): m in {1, 3} with tau = T / 2 covered 88% of the patches
        with no abstention on clean images; m = s only 50-69%; T / 4 and T / 2
        were within noise of each other, so tau follows the argument above.

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
    """
    _check_map(prediction_map)
    if isinstance(tau, (jax.Array, np.ndarray)):
        settings, _ = vote_settings(size, stride=stride, m=m)
        tau = _check_tau_array(tau)
    else:
        settings, tau = vote_settings(size, stride=stride, m=m, tau=tau)
    return _joint_vote_jit(jnp.asarray(prediction_map), tau, settings)


_joint_vote_jit = jax.jit(vote_with_settings, static_argnames="settings")


# ------------------------------------------------------------------- localize


def _localize_harmonic(classify, xs, chunks, tau, settings, dilation, grid):
    """Fill, classify, vote and mask for B images in one program."""
    pmaps = harmonic_maps(classify, xs, chunks, settings.size, grid)
    masks, votes = _vote_all(pmaps, tau, settings, dilation, xs.shape[1:3])
    return masks, pmaps, votes


_localize_harmonic_jit = jax.jit(
    _localize_harmonic, static_argnames=("settings", "dilation", "grid")
)


def localize(
    classify,
    x,
    size,
    *,
    stride=1,
    m=None,
    tau=None,
    dilation=3,
    method="telea",
    batch_size=256,
    workers=None,
    mesh=None,
) -> LocalizeResult | list[LocalizeResult]:
    """Locates a patch by joint voting (spec section 4) and returns its mask.

    Host driver: takes one image or a batch, checks pixel values, and runs
    Telea on host threads. One image is the batch of one: a batch gives, for
    each image, the result of calling ``localize`` on that image alone.

    With ``method="harmonic"`` the whole localisation of the batch (inpaint,
    classify, vote, mask) is one jitted device program: the (image, position)
    pairs of all images are classified in chunks of ``batch_size`` with
    ``lax.map``, and voting is vmapped over the images. With ``method="telea"``
    the prediction maps are built by host threads overlapped with device
    classification (consecutive images share classify calls), then voting
    runs as one vmapped program.

    Args:
      classify: pure function [N, H, W, C] -> logits [N, K] (the base classifier
        f, not smoothed); plain function or ``jax.tree_util.Partial``.
      x: [H, W, C] image or [B, H, W, C] batch, float in [0, 1], possibly
        carrying patches.
      size: block side s (normally the patch size).
      stride: pixel step between block positions, >= 1.
      m: template arm overlap in [1, s]; default ceil(s / 2) (see ``joint_vote``).
      tau: abstention threshold >= 0; default half of the template size.
      dilation: pixels added to every side of the located block, >= 0.
      method: "telea" or "harmonic".
      batch_size: inpainted variants per device call, over all images.
      workers: Telea threads; default os.cpu_count().
      mesh: optional ``jax.sharding.Mesh`` sharding each chunk of pairs for
        "harmonic".

    Returns:
      For one image, a LocalizeResult of jax arrays. ``reason_name`` is "ok",
      "no_change" (no block changed the prediction; abstain False, and the mask
      marks the block the tie-break picks, the central position, where the
      pipeline still certifies) or "multiple_regions" (abstain True; mask still
      marks the best block). For a batch, a list of B LocalizeResults with the
      same fields and values as numpy arrays (one transfer for the batch).

    Raises:
      TypeError, ValueError: naming the argument, for a bad classify, image
        (rank, dtype, values outside [0, 1]) or setting.
    """
    xs, single = _checks.image_or_batch(x)
    classify, size, stride, method, batch_size = check_map_settings(
        classify, xs.shape[1:], size, stride, method, batch_size
    )
    settings, tau = vote_settings(size, stride=stride, m=m, tau=tau)
    dilation = inpaint.check_int(dilation, "dilation", 0)
    height, width = xs.shape[1:3]
    grid = inpaint.grid_shape(height, width, size, stride)
    positions = inpaint.block_positions(height, width, size, stride)
    if method == "harmonic":
        batch_size = harmonic_batch_size(batch_size, len(xs) * len(positions), mesh)
        chunks = pair_chunks(len(xs), positions, batch_size)
        masks, pmaps, votes = _localize_harmonic_jit(
            *place_pairs(classify, xs, chunks, mesh), tau, settings, dilation, grid
        )
    else:
        batch_size = min(batch_size, len(xs) * len(positions))
        pmaps = telea_maps(classify, xs, positions, size, batch_size, grid, workers)
        masks, votes = _vote_all_jit(pmaps, tau, settings, dilation, (height, width))
    batched = localize_result(masks, pmaps, votes)
    if single:
        return LocalizeResult(*(field[0] for field in batched))
    return _split(batched)


def _split(batched: LocalizeResult) -> list[LocalizeResult]:
    """One LocalizeResult of numpy fields per image, from one device transfer."""
    host = jax.device_get(batched)
    return [
        LocalizeResult(*(field[b] for field in host)) for b in range(len(host.mask))
    ]


def localize_result(mask, prediction_map, vote: VoteResult) -> LocalizeResult:
    """The :class:`LocalizeResult` of a located mask, its map and its vote."""
    return LocalizeResult(
        mask=mask,
        top_left=vote.top_left,
        score_map=vote.score_map,
        prediction_map=prediction_map,
        attacked_class=vote.attacked_class,
        abstain=vote.abstain,
        reason=vote.reason,
        n_components=vote.n_components,
    )
