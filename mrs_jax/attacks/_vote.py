"""Vote-aware patch attack: move the localiser's vote away from the patch.

The patch is optimised (the shared ``_engine`` search) so that f says a
wrong class t (untargeted: the best wrong class at each step; or one fixed
target), filling the patch's own blocks does not change that, and filling the
blocks of a decoy position far from the patch does (``soft_vote``'s surrogate of
the vote); the vote's mask then lands on the decoy and the noise never touches
the patch. The best candidates are judged by the defence as deployed (localise,
then the smoothed PREDICT in the located mask; or by the localiser and f alone)
and the one worst for the defence is kept. See docs/attacks.md ("Vote-aware").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import localization
from mrs_jax.core import checks as _checks
from mrs_jax.localization import check_map_settings

from ._engine import SearchSettings, random_starts, search, search_settings
from ._soft_vote import changed_probability, template_offsets
from ._vote_judge import (
    VoteAttackResult,
    best_wrong,
    defence_judge,
    judge_and_keep,
)

GOALS = ("untargeted", "targeted")
DEFAULT_CANDIDATES = 8


class _Settings(NamedTuple):
    """Static settings of the jitted search (hashable); ``budget.keep`` is the
    number of candidates."""

    budget: SearchSettings
    stride: int
    m: int
    num_blocks: int
    untargeted: bool = False


# --------------------------------------------------------------- the objective


def _decoy_centre(key, top_left, grid, settings: _Settings) -> jax.Array:
    """[2] int32 map position whose template blocks miss the patch (Chebyshev
    distance >= 2 s - 1 pixels; the farthest positions where none is)."""
    rows, cols = grid
    r = jnp.arange(rows)[:, None] * settings.stride
    c = jnp.arange(cols)[None, :] * settings.stride
    dist = jnp.maximum(jnp.abs(r - top_left[0]), jnp.abs(c - top_left[1]))
    far = dist >= 2 * settings.budget.size - 1
    allowed = jnp.where(jnp.any(far), far, dist == jnp.max(dist))
    flat = jax.random.categorical(key, jnp.where(allowed, 0.0, -jnp.inf).ravel())
    return jnp.stack([flat // cols, flat % cols]).astype(jnp.int32)


def _template_blocks(key, centre, offsets, grid, count, stride):
    """``count`` blocks drawn uniformly from the template at map position
    ``centre``: pixel corners [count, 2] (clipped into the map) and [count]
    float32 weights, 0 where the drawn cell lies outside the map."""
    index = jax.random.randint(key, (count,), 0, offsets.shape[0])
    cells = centre[None, :] + offsets[index]
    upper = jnp.array(grid) - 1
    valid = jnp.all((cells >= 0) & (cells <= upper), axis=1)
    corners = jnp.clip(cells, 0, upper) * stride
    return corners.astype(jnp.int32), valid.astype(jnp.float32)


def _variants(x_adv, top_left, decoy, key, offsets, settings: _Settings):
    """x_adv and its 2 * num_blocks fills for one location: [V, H, W, C] images
    and [V - 1] weights (patch blocks first, then decoy blocks)."""
    size, stride = settings.budget.size, settings.stride
    grid = localization.grid_shape(*x_adv.shape[:2], size, stride)
    own = jnp.clip((top_left + stride // 2) // stride, 0, jnp.array(grid) - 1)
    patch_key, decoy_key = jax.random.split(key)
    parts = [
        _template_blocks(k, centre, offsets, grid, settings.num_blocks, stride)
        for k, centre in ((patch_key, own), (decoy_key, decoy))
    ]
    corners = jnp.concatenate([parts[0][0], parts[1][0]])
    weights = jnp.concatenate([parts[0][1], parts[1][1]])
    fills = jax.vmap(localization.harmonic_variant, in_axes=(None, 0, None))(
        x_adv, corners, size
    )
    return jnp.concatenate([x_adv[None], fills]), weights


def _objective(logits, weights, target, coefs, settings: _Settings):
    """[V, K] logits of one location's variants -> [] J (docs/attacks.md).
    Untargeted, ``target`` is the true label y: the base term is the clipped
    cross-entropy of y (as PGD's loss) and the vote terms are taken at t, the
    best wrong class of the patched image, chosen anew at every step."""
    logits = logits.astype(jnp.float32)
    base_weight, patch_weight, decoy_weight, kappa = coefs
    if settings.untargeted:
        label = target
        is_label = jnp.arange(logits.shape[-1]) == label
        target = jnp.argmax(jnp.where(is_label, -jnp.inf, logits[0]))
        gain = jax.nn.logsumexp(logits[0]) - logits[0, label]
    else:
        is_target = jnp.arange(logits.shape[-1]) == target
        gain = logits[0, target] - jnp.max(jnp.where(is_target, -jnp.inf, logits[0]))
    changed = changed_probability(logits[1:], target) * weights
    n = settings.num_blocks
    patch_frac = jnp.mean(changed[:n])
    decoy_frac = jnp.mean(changed[n:])
    return base_weight * jnp.minimum(gain, kappa) + kappa * (
        decoy_weight * decoy_frac - patch_weight * patch_frac
    )


@functools.partial(jax.jit, static_argnames="settings")
def _search_one(classify, image, target, key, step_size, coefs, settings):
    """Jitted search for one image: the ``num_candidates`` best locations, a
    ``Found`` of images [Q, H, W, C], top-lefts [Q, 2] and J [Q]."""
    location_key, init_key, decoy_key, sample_key = jax.random.split(key, 4)
    starts = random_starts(location_key, init_key, image.shape, settings.budget)
    grid = localization.grid_shape(
        *image.shape[:2], settings.budget.size, settings.stride
    )
    decoys = jax.vmap(_decoy_centre, in_axes=(0, 0, None, None))(
        jax.random.split(decoy_key, settings.budget.num_locations),
        starts.top_left,
        grid,
        settings,
    )
    vote = localization.VoteSettings(settings.budget.size, settings.stride, settings.m)
    offsets = jnp.asarray(template_offsets(vote))
    per_location = jax.vmap(_variants, in_axes=(0, 0, 0, 0, None, None))
    objective_each = jax.vmap(_objective, in_axes=(0, 0, None, None, None))

    def objective(x_adv, top_lefts, decoys, keys):  # [c, H, W, C] -> [c]
        images, weights = per_location(
            x_adv, top_lefts, decoys, keys, offsets, settings
        )
        logits = classify(images.reshape((-1,) + image.shape))
        logits = logits.reshape(images.shape[:2] + logits.shape[-1:])
        return objective_each(logits, weights, target, coefs, settings)

    return search(
        objective, image, starts, settings.budget, step_size,
        extras=decoys, sample_key=sample_key,
    )  # fmt: skip


# ------------------------------------------------------------- judge and drive


def vote_patch_attack(
    classify: Callable[[jax.Array], jax.Array],
    x: Any,
    y: Any,
    size: int,
    *,
    key: jax.Array,
    num_locations: int = 80,
    steps: int,
    step_size: float,
    goal: str = "untargeted",
    target: Any = None,
    num_blocks: int = 4,
    num_candidates: int | None = None,
    base_weight: float = 1.0,
    patch_weight: float = 1.0,
    decoy_weight: float = 1.0,
    kappa: float = 5.0,
    location_chunk: int | None = None,
    stride: int = 1,
    m: int | None = None,
    tau: float | None = None,
    dilation: int = 3,
    method: str = "telea",
    batch_size: int = 256,
    workers: int | None = None,
    mesh: Any = None,
    sigma: float | None = None,
    judge_n: int = 100,
    alpha: float = 0.001,
    return_details: bool = False,
) -> tuple[np.ndarray, np.ndarray] | VoteAttackResult:
    """s x s patch attack on the joint vote, judged by the defence as deployed.

    Maximises (docs/attacks.md, "Vote-aware")::

        J = base_weight * min(gain, kappa)
          + kappa * (decoy_weight * frac(decoy) - patch_weight * frac(patch))

    with z = f(x_adv); untargeted (``goal="untargeted"``), gain is the
    cross-entropy of the label y (PGD's loss) and t the best wrong class of
    x_adv at each step; targeted, t is fixed and gain = z_t - max_{k != t} z_k.
    ``frac(c)`` is the soft vote score (``soft_vote``, at class t) at map
    position c over the template size, estimated from ``num_blocks`` template
    blocks drawn at each step; ``patch`` is the patch's own position,
    ``decoy`` one drawn per location whose template misses the patch.

    Host driver (Telea runs on the host): one image, or a batch. The search is
    one jitted device program vmapped over the batch; the ``num_candidates``
    best locations of every image are then localised together by
    ``mrs_jax.localize`` with the given settings (pass the job's:
    ``job.localize_settings(config)``). With ``sigma``, each candidate is then
    judged by the deployed defence (PREDICT with ``judge_n`` draws at level
    ``alpha`` in its located mask; ``multiple_regions`` abstains), and each
    image keeps its candidate worst for that defence: a wrong answer, then an
    abstention, then the least support for the label, then ``OUTCOMES`` order,
    ties by J. Without ``sigma`` the localiser and f alone judge (``OUTCOMES``
    order, ties by J). Image b of a batch equals the one-image call with
    ``key=keys[b]``. Checks everything, values included (pixels in [0, 1],
    labels and targets in [0, K)). Cost per step: ``1 + 2 * num_blocks``
    forward-backward passes per location; then ``num_candidates``
    localisations (and PREDICTs) per image.

    Args:
      classify: base classifier, images [N, H, W, C] -> logits [N, K]; plain
        function or ``jax.tree_util.Partial``; batch entries independent.
      x: [H, W, C] float in [0, 1], or a batch [B, H, W, C].
      y: int [] true label, or [B].
      size: patch side s (also the localiser's block size).
      key: typed PRNG key; for a batch, [B] keys (image b uses ``key[b]``) or one
        key (image b uses ``fold_in(key, b)``).
      num_locations: random locations per image (paper: 80).
      steps: sign-gradient ascent steps on J (>= 0).
      step_size: step in pixel units (> 0).
      goal: ``"untargeted"`` (any wrong class) or ``"targeted"`` (``target``).
      target: attacked class t with ``goal="targeted"`` ([] or [B] ints, each
        != y); default the clean image's best-scoring wrong class.
      num_blocks: template blocks drawn per step for each vote term (>= 1).
      num_candidates: best locations judged, in [1, num_locations]; default
        min(8, num_locations).
      base_weight, patch_weight, decoy_weight: weights (>= 0) of J's terms.
      kappa: clip of the gain and scale of the vote terms (> 0).
      location_chunk: locations per model batch; None = all.
      stride, m, tau, dilation, method, batch_size, workers, mesh: the
        localiser's settings (``mrs_jax.localize``); ``batch_size`` is also
        PREDICT's draws per model batch.
      sigma: the defence's noise (> 0); None: no PREDICT in the judgement.
      judge_n: PREDICT's draws per candidate (>= 1; the job passes its n0).
      alpha: PREDICT's level, in (0, 1).
      return_details: return a ``VoteAttackResult`` instead of a pair.

    Returns:
      (image, top_left): image [H, W, C] float32 numpy array in [0, 1], x with
      the patch pasted in; top_left [2] int32 (row, column); a leading [B] for a
      batch. With ``return_details``, a ``VoteAttackResult``.

    Raises:
      TypeError, ValueError: on a bad argument, naming it.
    """
    classify = _checks.callable_pytree(classify, "classify")
    images, single = _checks.image_or_batch(x)
    count = len(images)
    settings = _search_settings(
        images.shape[1:], size, stride, m, num_locations, steps, location_chunk,
        num_blocks, num_candidates, _checks.one_of(goal, GOALS, "goal"),
    )  # fmt: skip
    localize_kwargs = _localize_kwargs(
        classify, images.shape[1:], settings, tau, dilation, method, batch_size,
        workers, mesh,
    )  # fmt: skip
    judge = defence_judge(sigma, judge_n, alpha, batch_size)
    step_size = jnp.float32(_checks.positive_float(step_size, "step_size"))
    coefs = _coefs(base_weight, patch_weight, decoy_weight, kappa)
    num_classes = _checks.num_logits(classify, images, "classify")
    if num_classes < 2:
        raise ValueError(f"classify must return >= 2 logits, got {num_classes}")
    labels = _checks.label_or_labels(y, count, single, num_classes, "y")
    keys = _image_keys(key, count, single)
    aims = _aims(classify, images, labels, goal, target, single, num_classes)

    search_all = jax.vmap(
        functools.partial(_search_one, classify, coefs=coefs, settings=settings),
        in_axes=(0, 0, 0, None),
    )
    found = jax.device_get(
        search_all(jnp.asarray(images), jnp.asarray(aims), keys, step_size)
    )
    result = judge_and_keep(
        classify, found, labels, aims, keys, settings, localize_kwargs, judge,
        num_classes,
    )  # fmt: skip
    if single:
        result = VoteAttackResult(*(field[0] for field in result))
    return result if return_details else (result.image, result.top_left)


def _search_settings(
    image_shape, size, stride, m, num_locations, steps, location_chunk,
    num_blocks, num_candidates, goal,
) -> _Settings:  # fmt: skip
    """Checks the static budget against one image's ``[H, W, C]``."""
    size = _checks.patch_size(size, image_shape)
    size, stride = localization.check_block(image_shape, size, stride)
    vote, _ = localization.vote_settings(size, stride=stride, m=m)
    budget = search_settings(
        size, image_shape[:2], num_locations, steps, location_chunk
    )
    if num_candidates is None:
        num_candidates = min(DEFAULT_CANDIDATES, budget.num_locations)
    num_candidates = _checks.positive_int(num_candidates, "num_candidates")
    if num_candidates > budget.num_locations:
        raise ValueError(
            f"num_candidates must be <= num_locations = {budget.num_locations}, "
            f"got {num_candidates}"
        )
    return _Settings(
        budget=budget._replace(keep=num_candidates),
        stride=stride,
        m=vote.m,
        num_blocks=_checks.positive_int(num_blocks, "num_blocks"),
        untargeted=goal == "untargeted",
    )


def _localize_kwargs(
    classify, image_shape, settings, tau, dilation, method, batch_size, workers, mesh
) -> dict[str, Any]:
    """The localiser's settings, checked up front (before the search runs)."""
    size = settings.budget.size
    check_map_settings(classify, image_shape, size, settings.stride, method, batch_size)
    localization.vote_settings(size, stride=settings.stride, m=settings.m, tau=tau)
    return {
        "stride": settings.stride,
        "m": settings.m,
        "tau": tau,
        "dilation": localization.check_int(dilation, "dilation", 0),
        "method": method,
        "batch_size": batch_size,
        "workers": workers,
        "mesh": mesh,
    }


def _coefs(base_weight, patch_weight, decoy_weight, kappa) -> jax.Array:
    """[4] float32 (base, patch, decoy weights, kappa), refusing all-zero weights."""
    weights = [
        _checks.nonnegative_float(w, name)
        for w, name in (
            (base_weight, "base_weight"),
            (patch_weight, "patch_weight"),
            (decoy_weight, "decoy_weight"),
        )
    ]
    if sum(weights) == 0:
        raise ValueError("base_weight, patch_weight and decoy_weight are all 0")
    kappa = _checks.positive_float(kappa, "kappa")
    return jnp.asarray(weights + [kappa], jnp.float32)


def _image_keys(key, count: int, single: bool) -> jax.Array:
    """[count] typed keys: the one key, [B] keys, or ``fold_in(key, b)``."""
    if single:
        return _checks.typed_key(key)[None]
    if isinstance(key, jax.Array) and getattr(key, "shape", None) == ():
        key = _checks.typed_key(key)
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(count))
    return _checks.key_batch(key, count, "key")


def _aims(classify, images, labels, goal, target, single, num_classes) -> np.ndarray:
    """[B] int32 classes the search is given: the true labels (untargeted: t
    is then chosen at every step), or the attacked classes, each != its label."""
    if goal == "untargeted":
        if target is not None:
            raise ValueError("target is only used with goal='targeted'")
        return np.asarray(labels, np.int32)
    if target is None:
        return np.asarray(best_wrong(classify, jnp.asarray(images), labels))
    targets = _checks.label_or_labels(
        target, len(images), single, num_classes, "target"
    )
    if np.any(targets == labels):
        raise ValueError(
            f"target must differ from y, got target {targets} for y {labels}"
        )
    return targets
