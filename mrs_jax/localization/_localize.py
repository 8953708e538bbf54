"""Patch localisation by joint voting (paper section 3.2).

Every s x s block is inpainted in turn and classified (the prediction map); the
attacked class c_t is the most frequent label; each candidate position scores the
positions with another label inside a cross-shaped template around it; the
best-scoring block, grown by ``dilation`` pixels, is the mask. Abstains when the
positions scoring above tau form two or more 8-connected regions; when no block
changes the prediction the reason is ``no_change`` and the mask is the central
block the tie-break picks. The certificate at this mask covers only the mask:
it is conditional on localisation. Template, defaults and evidence:
``docs/localization.md``.

``localize`` is a host driver (one image or a batch); the vote on one map is
``_joint_vote.py``'s device function."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import mrs_jax.localization._inpaint as inpaint
from mrs_jax.core import checks as _checks
from mrs_jax.localization._joint_vote import (
    VoteResult,
    reason_name,
    vote_settings,
    vote_with_settings,
)
from mrs_jax.localization._prediction_maps import (
    check_map_settings,
    harmonic_batch_size,
    harmonic_maps,
    pair_chunks,
    place_pairs,
    refuse_non_finite,
    telea_maps,
)


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
    """Locates a patch by joint voting and returns its mask
    (``docs/localization.md``).

    Host driver: takes one image or a batch, checks pixel values, and runs
    Telea on host threads. One image is the batch of one: a batch gives, for
    each image, the result of calling ``localize`` on that image alone. With
    ``method="harmonic"`` the whole localisation of the batch is one jitted
    device program.

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
    refuse_non_finite(pmaps, "an inpainted image")
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
