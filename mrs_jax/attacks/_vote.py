"""Vote-aware patch attack: go after joint voting itself (issue 22, part 1).

``patch_attack`` fools the base classifier f; ``adaptive_patch_attack`` also
keeps f fooled under fills of blocks overlapping the patch and under noise. Neither
models the vote (spec section 4): the attacked class c_t is the mode of the
prediction map, the changed set C is where a block's fill moves the label away
from c_t, each position scores the changed blocks in its cross template, the arg
max (grown by ``dilation``) is the mask, and two components above tau abstain.
The attacker's move against that vote: make the patch's effect depend on context
elsewhere, so that filling blocks far from the patch changes the prediction
(decoys) while filling the patch's own blocks does not, and the arg max lands away
from the patch. Then the mask misses the patch, the noise never touches it, and
the row cannot count as localised-certified.

Surrogate (:func:`soft_vote`, a device function). With the harmonic fill (the
localiser's differentiable on-device method, close to Telea) the soft prediction
map is ``changed[b] = 1 - softmax(f(fill_b(x)))[t]``: the probability that filling
block b moves the label away from the attacked class t (targeted: t is the class
the attack wants, the vote's c_t once f is fooled). The soft score is the vote's
template count over ``changed``; at a fooled image it is the vote's score wherever
the fills are confident.

Objective (the attacker's gain, maximised; one value per image and location)::

    J = base_weight * min(z_t - max_{k != t} z_k, kappa)       (f keeps saying t)
      + kappa * (decoy_weight * frac(decoy) - patch_weight * frac(patch))

with z = f(x_adv) and ``frac(c)`` = the soft score at map position c over the full
template size, estimated from ``num_blocks`` template blocks drawn uniformly at
each step (unbiased: blocks outside the map count 0, as in the vote). ``patch`` is
the patch's own position (its blocks should look unremarkable), ``decoy`` a
position drawn once per location whose template blocks do not overlap the patch
(Chebyshev distance >= 2 s - 1 pixels; the farthest positions where none is).
Decoys stay in one template, a minority of the map, so c_t stays t. The decoy
position is random: which part of an image the patch can make its effect depend
on is up to the model, and the ``num_locations`` starts try many.

Search. As ``patch_attack``: ``num_locations`` random top-left positions and
random initial patches, ``steps`` sign-gradient steps of ``step_size`` with
projection onto [0, 1], vmapped over locations (in chunks of ``location_chunk``).
The ``num_candidates`` locations (default 8) with the greatest final J (fresh
samples) are then judged by the REAL pipeline: ``mrs_jax.localize`` with the
job's method (Telea), stride, m, tau and dilation, and f's label. Order, best
for the attacker first (``OUTCOMES``; ties by J):

0. ``fooled_missed``: f fooled, the vote answers (located or no_change) and its
   mask does not contain the whole patch: the defence certifies elsewhere, with
   the patch intact, and the row cannot count as localised-certified.
1. ``fooled_abstained``: f fooled, the vote abstains (multiple_regions). The
   metrics count an abstention as wrong, but it is a detected attack: a deployed
   defence refuses rather than answers wrongly, so it ranks below an undetected
   miss.
2. ``fooled_covered``: f fooled and the mask covers the patch: the case MRS
   certifies; the smoothing inside the mask usually undoes the patch.
3. ``not_fooled``: f still says y.

Evidence so far (tests/test_vote_attack.py, a constructed classifier whose
label can be pushed either by a local dark patch or by a bright one that only
works while a checkerboard elsewhere is intact; 16 x 16, s = 4, dilation 2,
Telea; 8 locations x 10 steps): over 8 seeds ``patch_attack`` and
``adaptive_patch_attack`` (eot_inpaint) were located 8 of 8 times, this attack
0 of 8 (f fooled every time, the mask on the checkerboard). Not yet measured on
CIFAR-10 (``certify/configs/cifar10_cpu_vote.py``).

Cost per step: ``1 + 2 * num_blocks`` forward-backward passes per location; then
``num_candidates`` localisations per image (each ``rows * cols`` Telea fills).

Stage: an attack on the localiser, so it sits above ``mrs_jax.localize``
(which it calls); nothing below the row builders imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mrs_jax import localization
from mrs_jax.core import checks as _checks
from mrs_jax.localization import check_map_settings

OUTCOMES = ("fooled_missed", "fooled_abstained", "fooled_covered", "not_fooled")
DEFAULT_CANDIDATES = 8


class SoftVote(NamedTuple):
    """Output of :func:`soft_vote`.

    Attributes:
      changed: [rows, cols] float32 in [0, 1], ``1 - p_t`` of each block's fill.
      score: [rows, cols] float32, the cross-template sum of ``changed``.
    """

    changed: jax.Array
    score: jax.Array


class VoteAttackResult(NamedTuple):
    """Output of ``vote_patch_attack(..., return_details=True)``.

    Attributes:
      image: [H, W, C] (or [B, H, W, C]) float32 in [0, 1], x with the patch.
      top_left: [2] (or [B, 2]) int32 (row, column) of the patch.
      outcome: [] (or [B]) int32 index into ``OUTCOMES`` of the kept candidate,
        as the real localiser judged it.
      objective: [] (or [B]) float32 surrogate J of the kept candidate.
      target: [] (or [B]) int32 attacked class t.
      candidate_outcomes: [Q] (or [B, Q]) int32 outcomes of all judged
        candidates, greatest J first (Q = num_candidates).
      candidate_objectives: [Q] (or [B, Q]) float32 their J, decreasing.
    """

    image: np.ndarray
    top_left: np.ndarray
    outcome: np.ndarray
    objective: np.ndarray
    target: np.ndarray
    candidate_outcomes: np.ndarray
    candidate_objectives: np.ndarray


class _Settings(NamedTuple):
    """Static settings of the jitted core (hashable)."""

    size: int
    stride: int
    m: int
    num_locations: int
    steps: int
    location_chunk: int
    num_blocks: int
    num_candidates: int


# ------------------------------------------------------------------ surrogate


def _template_offsets(vote: localization.VoteSettings) -> np.ndarray:
    """[T, 2] int32 map-index offsets of the full cross template (T is
    ``localize.template_size``), as ``joint_vote`` counts them."""
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


def _changed(logits: jax.Array, target: jax.Array) -> jax.Array:
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
    changed = _changed(classify(fills), target).reshape(
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


# ------------------------------------------------------------ surrogate search


def _paste(image, patch, top_left):
    return lax.dynamic_update_slice(image, patch, (top_left[0], top_left[1], 0))


def _decoy_centre(key, top_left, grid, settings: _Settings) -> jax.Array:
    """[2] int32 map position whose template blocks miss the patch (module doc)."""
    rows, cols = grid
    r = jnp.arange(rows)[:, None] * settings.stride
    c = jnp.arange(cols)[None, :] * settings.stride
    dist = jnp.maximum(jnp.abs(r - top_left[0]), jnp.abs(c - top_left[1]))
    far = dist >= 2 * settings.size - 1
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


def _variants(image, patch, top_left, decoy, key, offsets, settings: _Settings):
    """x_adv and its 2 * num_blocks fills for one location: [V, H, W, C] images
    and [V - 1] weights (patch blocks first, then decoy blocks)."""
    height, width = image.shape[:2]
    grid = localization.grid_shape(height, width, settings.size, settings.stride)
    x_adv = _paste(image, patch, top_left)
    own = jnp.clip(
        (top_left + settings.stride // 2) // settings.stride, 0, jnp.array(grid) - 1
    )
    patch_key, decoy_key = jax.random.split(key)
    parts = [
        _template_blocks(k, centre, offsets, grid, settings.num_blocks, settings.stride)
        for k, centre in ((patch_key, own), (decoy_key, decoy))
    ]
    corners = jnp.concatenate([parts[0][0], parts[1][0]])
    weights = jnp.concatenate([parts[0][1], parts[1][1]])
    fills = jax.vmap(localization.harmonic_variant, in_axes=(None, 0, None))(
        x_adv, corners, settings.size
    )
    return jnp.concatenate([x_adv[None], fills]), weights


def _objective(logits, weights, target, coefs, settings: _Settings):
    """[V, K] logits of one location's variants -> [] J (module doc)."""
    logits = logits.astype(jnp.float32)
    base_weight, patch_weight, decoy_weight, kappa = coefs
    is_target = jnp.arange(logits.shape[-1]) == target
    other = jnp.max(jnp.where(is_target, -jnp.inf, logits[0]))
    margin = jnp.minimum(logits[0, target] - other, kappa)
    changed = _changed(logits[1:], target) * weights
    n = settings.num_blocks
    patch_frac = jnp.mean(changed[:n])
    decoy_frac = jnp.mean(changed[n:])
    return base_weight * margin + kappa * (
        decoy_weight * decoy_frac - patch_weight * patch_frac
    )


def _starts(key, image_shape, settings: _Settings):
    """Top-lefts [P, 2], initial patches [P, s, s, C], decoy centres [P, 2] and
    per-location keys [P], padded to P = whole chunks (padding is discarded)."""
    height, width, channels = image_shape
    size, count = settings.size, settings.num_locations
    padded = -(-count // settings.location_chunk) * settings.location_chunk
    location_key, init_key, decoy_key, eot_key = jax.random.split(key, 4)
    upper = jnp.array([height - size + 1, width - size + 1])
    top_lefts = jax.random.randint(location_key, (count, 2), 0, upper)
    patches = jax.random.uniform(init_key, (count, size, size, channels))
    grid = localization.grid_shape(height, width, size, settings.stride)
    decoys = jax.vmap(_decoy_centre, in_axes=(0, 0, None, None))(
        jax.random.split(decoy_key, count), top_lefts, grid, settings
    )
    fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
    keys = fold(eot_key, jnp.arange(padded))
    pad = ((0, padded - count),)
    return (
        jnp.pad(top_lefts, pad + ((0, 0),)),
        jnp.pad(patches, pad + ((0, 0),) * 3),
        jnp.pad(decoys, pad + ((0, 0),)),
        keys,
    )


@functools.partial(jax.jit, static_argnames="settings")
def _search_one(classify, image, target, key, step_size, coefs, settings):
    """Jitted core for one image: the ``num_candidates`` best locations.

    Returns:
      candidate images [Q, H, W, C], top-lefts [Q, 2] int32, J [Q] (Q =
      num_candidates, greatest J first).
    """
    height, width, channels = image.shape
    top_lefts, patches, decoys, keys = _starts(key, image.shape, settings)
    chunk, padded = settings.location_chunk, top_lefts.shape[0]
    offsets = jnp.asarray(
        _template_offsets(
            localization.VoteSettings(settings.size, settings.stride, settings.m)
        )
    )
    per_location = jax.vmap(_variants, in_axes=(None, 0, 0, 0, 0, None, None))
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))

    def objectives(chunk_patches, chunk_corners, chunk_decoys, chunk_keys):  # [c]
        images, weights = per_location(
            image,
            chunk_patches,
            chunk_corners,
            chunk_decoys,
            chunk_keys,
            offsets,
            settings,
        )  # [c, V, H, W, C], [c, V - 1]
        # One model batch of every (location, variant): each patch's gradient is
        # its own (models must treat batch entries independently).
        logits = classify(images.reshape((-1, height, width, channels)))
        logits = logits.reshape(images.shape[:2] + logits.shape[-1:])
        return jax.vmap(_objective, in_axes=(0, 0, None, None, None))(
            logits, weights, target, coefs, settings
        )

    def run_chunk(part):
        chunk_patches, corners, chunk_decoys, chunk_keys = part

        def step(patch, index):
            keys_now = step_keys(chunk_keys, index)
            total = lambda p: objectives(p, corners, chunk_decoys, keys_now).sum()
            grad = jax.grad(total)(patch)
            return jnp.clip(patch + step_size * jnp.sign(grad), 0.0, 1.0), None

        chunk_patches, _ = lax.scan(step, chunk_patches, jnp.arange(settings.steps))
        final = objectives(
            chunk_patches, corners, chunk_decoys, step_keys(chunk_keys, settings.steps)
        )
        return chunk_patches, final

    def to_chunks(a):
        return a.reshape((padded // chunk, chunk) + a.shape[1:])

    final_patches, final_j = lax.map(
        run_chunk, tuple(map(to_chunks, (patches, top_lefts, decoys, keys)))
    )
    valid = jnp.arange(padded) < settings.num_locations
    final_j = jnp.where(valid, final_j.reshape(padded), -jnp.inf)
    best_j, best = lax.top_k(final_j, settings.num_candidates)
    corners = top_lefts[best].astype(jnp.int32)
    chosen = final_patches.reshape(patches.shape)[best]
    candidates = jax.vmap(_paste, in_axes=(None, 0, 0))(image, chosen, corners)
    return candidates, corners, best_j


@jax.jit
def _best_wrong(classify, images, labels) -> jax.Array:
    """[B] int32: each image's best-scoring class other than its label."""
    logits = classify(images).astype(jnp.float32)
    is_label = jnp.arange(logits.shape[-1])[None, :] == labels[:, None]
    return jnp.argmax(jnp.where(is_label, -jnp.inf, logits), axis=-1).astype(jnp.int32)


# ------------------------------------------------------------- judge and drive


@jax.jit
def _labels_of(classify, images) -> jax.Array:
    return jnp.argmax(classify(images), axis=-1).astype(jnp.int32)


def _judge(classify, candidates, top_lefts, labels, size, localize_kwargs, chunk):
    """[N] int32 ``OUTCOMES`` index of each candidate [N, H, W, C] under the
    real localiser and f (module doc)."""
    located = localization.localize(classify, candidates, size, **localize_kwargs)
    predicted = np.concatenate(
        [
            np.asarray(_labels_of(classify, jnp.asarray(candidates[i : i + chunk])))
            for i in range(0, len(candidates), chunk)
        ]
    )
    outcomes = np.empty(len(candidates), np.int32)
    for n, (result, (row, col)) in enumerate(zip(located, top_lefts, strict=True)):
        covered = bool(np.all(result.mask[row : row + size, col : col + size]))
        if predicted[n] == labels[n]:
            outcomes[n] = 3
        elif result.reason_name == "multiple_regions":
            outcomes[n] = 1
        else:
            outcomes[n] = 2 if covered else 0
    return outcomes


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
    return_details: bool = False,
) -> tuple[np.ndarray, np.ndarray] | VoteAttackResult:
    """s x s patch attack on the joint vote, judged by the real localiser.

    Host driver (Telea runs on the host): one image, or a batch. The surrogate
    search (module doc) is one jitted device program vmapped over the batch;
    the ``num_candidates`` best locations of every image are then localised
    together by ``mrs_jax.localize`` with the given settings (pass the job's:
    ``pipeline.localize_settings(config)``), and each image keeps its candidate
    worst for the defence (``OUTCOMES`` order, ties by J). Image b of a batch
    equals the one-image call with ``key=keys[b]``. Checks everything, values
    included (pixels in [0, 1], labels and targets in [0, K)).

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
      target: attacked class t ([] or [B] ints, each != y); default the clean
        image's best-scoring wrong class.
      num_blocks: template blocks drawn per step for each vote term (>= 1).
      num_candidates: best locations judged by the localiser, in
        [1, num_locations]; default min(8, num_locations).
      base_weight, patch_weight, decoy_weight: weights (>= 0) of J's terms.
      kappa: clip of the targeted margin and scale of the vote terms (> 0).
      location_chunk: locations per model batch; None = all.
      stride, m, tau, dilation, method, batch_size, workers, mesh: the
        localiser's settings (``mrs_jax.localize``).
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
        num_blocks, num_candidates,
    )  # fmt: skip
    localize_kwargs = _localize_kwargs(
        classify, images.shape[1:], settings, tau, dilation, method, batch_size,
        workers, mesh,
    )  # fmt: skip
    step_size = jnp.float32(_checks.positive_float(step_size, "step_size"))
    coefs = _coefs(base_weight, patch_weight, decoy_weight, kappa)
    num_classes = _checks.num_logits(classify, images, "classify")
    if num_classes < 2:
        raise ValueError(f"classify must return >= 2 logits, got {num_classes}")
    labels = _checks.label_or_labels(y, count, single, num_classes, "y")
    keys = _image_keys(key, count, single)
    targets = _targets(classify, images, labels, target, single, num_classes)

    search = jax.vmap(
        functools.partial(_search_one, classify, coefs=coefs, settings=settings),
        in_axes=(0, 0, 0, None),
    )
    candidates, corners, objective = jax.device_get(
        search(jnp.asarray(images), jnp.asarray(targets), keys, step_size)
    )
    q = settings.num_candidates
    outcomes = _judge(
        classify,
        candidates.reshape((-1,) + images.shape[1:]),
        corners.reshape(-1, 2),
        np.repeat(labels, q),
        settings.size,
        localize_kwargs,
        batch_size,
    ).reshape(count, q)
    # lexsort: last key first; candidates come sorted by J, so ties keep J order.
    best = np.lexsort((-objective, outcomes), axis=-1)[:, 0]
    rows = np.arange(count)
    result = VoteAttackResult(
        candidates[rows, best].astype(np.float32),
        corners[rows, best].astype(np.int32),
        outcomes[rows, best],
        objective[rows, best].astype(np.float32),
        targets,
        outcomes,
        objective.astype(np.float32),
    )
    if single:
        result = VoteAttackResult(*(field[0] for field in result))
    return result if return_details else (result.image, result.top_left)


def _search_settings(
    image_shape, size, stride, m, num_locations, steps, location_chunk,
    num_blocks, num_candidates,
) -> _Settings:  # fmt: skip
    """Checks the static budget against one image's ``[H, W, C]``."""
    size = _checks.patch_size(size, image_shape)
    size, stride = localization.check_block(image_shape, size, stride)
    vote, _ = localization.vote_settings(size, stride=stride, m=m)
    num_locations = _checks.positive_int(num_locations, "num_locations")
    chunk = num_locations if location_chunk is None else location_chunk
    if num_candidates is None:
        num_candidates = min(DEFAULT_CANDIDATES, num_locations)
    num_candidates = _checks.positive_int(num_candidates, "num_candidates")
    if num_candidates > num_locations:
        raise ValueError(
            f"num_candidates must be <= num_locations = {num_locations}, "
            f"got {num_candidates}"
        )
    return _Settings(
        size=size,
        stride=stride,
        m=vote.m,
        num_locations=num_locations,
        steps=_checks.positive_int(steps, "steps", minimum=0),
        location_chunk=min(
            _checks.positive_int(chunk, "location_chunk"), num_locations
        ),
        num_blocks=_checks.positive_int(num_blocks, "num_blocks"),
        num_candidates=num_candidates,
    )


def _localize_kwargs(
    classify, image_shape, settings, tau, dilation, method, batch_size, workers, mesh
) -> dict[str, Any]:
    """The localiser's settings, checked up front (before the search runs)."""
    check_map_settings(
        classify, image_shape, settings.size, settings.stride, method, batch_size
    )
    localization.vote_settings(
        settings.size, stride=settings.stride, m=settings.m, tau=tau
    )
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


def _targets(classify, images, labels, target, single, num_classes) -> np.ndarray:
    """[B] int32 attacked classes, each != its label."""
    if target is None:
        return np.asarray(_best_wrong(classify, jnp.asarray(images), labels))
    targets = _checks.label_or_labels(
        target, len(images), single, num_classes, "target"
    )
    if np.any(targets == labels):
        raise ValueError(
            f"target must differ from y, got target {targets} for y {labels}"
        )
    return targets
