"""Double masking with masked Gaussian noise: a certificate for every patch position.

PatchCleanser's grey fill is replaced by MRS's noise: for a covering mask set
``M_1..M_k`` (:func:`patchcleanser_masks`) and every ``S = M_i u M_j``
(``i = j`` included), ``g_S`` smooths with ``N(0, sigma^2)`` inside ``S`` only.
:func:`smoothed_double_masking` runs PatchCleanser's three cases on PREDICTs of
the ``g_S`` (an abstention is its own label);
:func:`smoothed_double_masking_certify` certifies every ``g_S(x)`` for ``y`` at
radius ``R`` with ``certify_at``.

Guarantee: with probability at least ``1 - alpha``, if certified, the three-case
inference on the exact ``g_S`` returns ``y`` on ``x + d`` for every patch region
inside some mask and every ``d`` zero outside it with ``||d||_2 <= R``; every
combination is tested at the full ``alpha`` (an intersection-union test, no
split). Proof, statistics and what the deployed inference guarantees:
``docs/smoothed_double_masking.md``. These are host drivers, not jittable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

import mrs_jax.certification._schedule as schedule_module
import mrs_jax.certification._sequential as sequential
import mrs_jax.certification._smoothing as smoothing
from mrs_jax.certification._smoothing import ABSTAIN
from mrs_jax.core import checks as _checks, sharding

Classifier = Callable[[jax.Array], jax.Array]

CERTIFICATE = "every_patch_position_l2"


class SmoothedDoubleMaskingCertificate(NamedTuple):
    """The outcome of :func:`smoothed_double_masking_certify`.

    Combination ``c`` is the pair ``pairs[c] = (i, j)``, ``i <= j``, smoothed in
    ``masks[i] | masks[j]``. The two-mask combinations are drawn only when
    every one-mask combination is certified; within a stage, the first
    combination to fail stops the others (``pair_stop_reason``
    ``"abandoned"``).

    Attributes:
      certified: every combination is certified for ``label`` at ``radius``;
        false with probability at most ``alpha``
        (``docs/smoothed_double_masking.md``).
      p_lower: the smallest lower bound on ``p_label`` over the combinations
        drawn; where ``certified``, a level-``alpha`` lower bound on the
        smallest ``p_label^S(x)``, so ``sigma * Phi^-1(p_lower)`` (>= radius)
        is a radius of the whole certificate.
      num_samples: every draw made, the selection draws included.
      pairs: ``[P, 2]`` int mask indices, ``P = k (k + 1) / 2``.
      pair_certified: ``[P]`` bool, combination certified for ``label``.
      pair_p_lower: ``[P]`` float, ``certify_at``'s lower bound where its
        selection chose ``label`` (or ``n0 = 0``), 0.0 where it chose another
        class, NaN where the combination was not drawn. Each is valid at
        ``alpha`` on its own, not simultaneously.
      pair_num_samples: ``[P]`` int draws per combination (0: not drawn).
      pair_stop_reason: ``[P]`` str, ``certify_at``'s ``stop_reason``
        (``"abandoned"``: stopped when another combination failed), ``""``
        where the combination was not drawn.
    """

    certified: bool
    p_lower: float
    num_samples: int
    pairs: np.ndarray
    pair_certified: np.ndarray
    pair_p_lower: np.ndarray
    pair_num_samples: np.ndarray
    pair_stop_reason: np.ndarray


class _Problem(NamedTuple):
    """Validated inputs shared by every stage."""

    classify: Classifier
    x: np.ndarray
    masks: np.ndarray
    sigma: float
    num_classes: int
    batch_size: int
    mesh: Mesh


class _Inference(NamedTuple):
    label: int
    case: int
    num_samples: int


# ------------------------------------------------------------------- counting


def _smoothed(problem: _Problem, pairs: np.ndarray, keys, *, alpha, **settings):
    """``g_{M_i u M_j}(x)`` for each of the ``[P, 2]`` pairs, combination ``p``
    with key ``keys[p]``, all in one batch: with ``settings`` ``n``, PREDICT's
    ``Prediction`` per pair; with ``radius``, ``n0``, ``max_n`` and
    ``futility_alpha`` (and ``label``, ``all_or_nothing``), ``certify_at``'s
    ``TargetCertificate`` per pair.

    The one place that calls the batched counting: pair ``p`` gets exactly the
    one-image ``predict`` / ``certify_at`` with ``key=keys[p]`` (for
    ``certify_at`` with ``all_or_nothing``, every pair that decided before
    the first failure).
    """
    union = problem.masks[pairs[:, 0]] | problem.masks[pairs[:, 1]]
    images = np.broadcast_to(problem.x, (len(pairs), *problem.x.shape))
    run = smoothing.predict if "n" in settings else sequential.certify_at
    arguments = (problem.classify, images, union, problem.sigma)
    if run is sequential.certify_at:
        arguments += (settings.pop("radius"),)
    return run(
        *arguments,
        key=keys,
        alpha=alpha,
        num_classes=problem.num_classes,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
        **settings,
    )


# ------------------------------------------------------------------- shared


def _prepare(classify, x, masks, sigma, num_classes, batch_size, mesh, key):
    """``(problems, keys, single)``: one validated problem and key per image.

    A batch runs image by image (each image's stages stop on its own first
    failure), so image ``b`` gets what it would alone with ``keys[b]``.
    """
    images, single = _checks.image_or_batch(x)
    keys = _checks.key_or_keys(key, len(images), single)
    problems = [
        _problem(classify, image, masks, sigma, num_classes, batch_size, mesh)
        for image in images
    ]
    return problems, list(keys), single


def _problem(classify, x, masks, sigma, num_classes, batch_size, mesh) -> _Problem:
    _checks.callable_(classify, "classify")
    if masks is None:
        raise TypeError("masks must be an [M, H, W] array, got None")
    if np.ndim(masks) != 3:
        raise ValueError(
            f"masks must be [M, H, W] (e.g. patchcleanser_masks), got shape "
            f"{np.shape(masks)}"
        )
    masks = _checks.masks(masks, (len(masks), *x.shape[:2]), "masks")
    sigma = _checks.positive_float(sigma, "sigma")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    mesh = sharding.sample_mesh() if mesh is None else mesh
    _checks.mesh_with_axis(mesh, sharding.SAMPLES)
    return _Problem(classify, x, masks, sigma, num_classes, batch_size, mesh)


def _combinations(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``([P, 2] pairs i <= j in triu order, [M, M] their combination index)``."""
    pairs = np.stack(np.triu_indices(count), axis=1)
    index = np.empty((count, count), np.int64)
    index[pairs[:, 0], pairs[:, 1]] = np.arange(len(pairs))
    index[pairs[:, 1], pairs[:, 0]] = np.arange(len(pairs))
    return pairs, index


def _keys(key, combinations: np.ndarray) -> jax.Array:
    """``[len(combinations)]`` keys ``fold_in(key, c)``: one stream per
    combination, whichever stage draws it."""
    return _fold_in_each(key, np.asarray(combinations, np.uint32))


_fold_in_each = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))


# ------------------------------------------------------------------- inference


def smoothed_double_masking(
    classify: Classifier,
    x,
    masks,
    sigma: float,
    *,
    key: jax.Array,
    n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    mesh: Mesh | None = None,
) -> int | list[int]:
    """The defended label of ``x``: three-case inference on masked-noise PREDICTs.

    Host driver. PREDICTs the ``k`` one-mask combinations in one batch and,
    when they disagree, the two-mask combinations of the disagreeing masks in a
    second one. Combination ``c`` draws from ``fold_in(key, c)``, so a label is
    the same in either stage.

    Args:
      classify: ``[B, H, W, C] -> [B, num_classes]`` logits, a function or a
        ``jax.tree_util.Partial`` carrying weights.
      x: ``[H, W, C]`` float32 image in [0, 1], clean or attacked, or a batch
        ``[B, H, W, C]``, run image by image (each gets what it would alone).
      masks: ``[k, H, W]`` bool or {0, 1}, none empty, e.g.
        :func:`mrs_jax.patchcleanser_masks`.
      sigma: noise standard deviation inside each combination, > 0.
      key: typed PRNG key; for a batch, one (split B ways) or ``[B]`` keys.
      n: draws per PREDICT, >= 1.
      alpha: each PREDICT's level in (0, 1): it returns a class other than
        ``g_S(x)`` with probability at most ``alpha``.
      num_classes: K >= 2.
      batch_size: (combination, draw) pairs per device step.
      mesh: a mesh with a ``"samples"`` axis; default every device.

    Returns:
      The defended label, or ``ABSTAIN`` (-1) where the abstentions carry the
      vote (a list of B labels for a batch). Ties for the one-mask majority go
      to the smallest class, ABSTAIN last.
    """
    problems, keys, single = _prepare(
        classify, x, masks, sigma, num_classes, batch_size, mesh, key
    )
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    pairs = zip(problems, keys, strict=True)
    labels = [_defend(problem, k, n, alpha).label for problem, k in pairs]
    return labels[0] if single else labels


def _defend(problem: _Problem, key, n: int, alpha: float) -> _Inference:
    """PatchCleanser's three cases on PREDICT labels: label, case and draws made."""
    count = len(problem.masks)
    labels = _PairLabels(problem, key, n, alpha)
    one_mask = labels(labels.index[np.arange(count), np.arange(count)], pad=False)
    majority = _majority(one_mask)
    if np.all(one_mask == majority):
        return _Inference(majority, 1, labels.num_samples)
    disagreers = np.flatnonzero(one_mask != majority)
    rows = labels(labels.index[disagreers].ravel(), pad=True).reshape(-1, count)
    for mask_index, row in zip(disagreers, rows, strict=True):
        if np.all(row == one_mask[mask_index]):
            return _Inference(int(one_mask[mask_index]), 2, labels.num_samples)
    return _Inference(majority, 3, labels.num_samples)


class _PairLabels:
    """PREDICT's label of each combination, drawn once with ``fold_in(key, c)``.

    The program that counts a batch is compiled per batch size, so the second
    stage, whose size varies with the image, is padded to a power of two (at
    most every combination left) with combinations not yet drawn; their labels
    are kept, never read unless needed.
    """

    def __init__(self, problem: _Problem, key, n: int, alpha: float):
        self.problem, self.key, self.n, self.alpha = problem, key, n, alpha
        self.pairs, self.index = _combinations(len(problem.masks))
        self.labels: dict[int, int] = {}

    @property
    def num_samples(self) -> int:
        return self.n * len(self.labels)

    def __call__(self, combinations: np.ndarray, *, pad: bool) -> np.ndarray:
        wanted = set(combinations.tolist()) - self.labels.keys()
        if wanted:
            needed = sorted(wanted)
            undrawn = [c for c in range(len(self.pairs)) if c not in self.labels]
            size = len(needed)
            if pad:
                size = min(len(undrawn), 1 << (size - 1).bit_length())
            extra = [c for c in undrawn if c not in wanted]
            todo = np.array(needed + extra[: size - len(needed)], np.int64)
            results = _smoothed(
                self.problem,
                self.pairs[todo],
                _keys(self.key, todo),
                n=self.n,
                alpha=self.alpha,
            )
            labels = [r.label for r in results]
            self.labels.update(zip(todo.tolist(), labels, strict=True))
        return np.array([self.labels[c] for c in combinations.tolist()], np.int64)


def _majority(labels: np.ndarray) -> int:
    """The most frequent label; ties to the smallest class, ABSTAIN last."""
    values, counts = np.unique(labels, return_counts=True)
    order = np.lexsort((values, values == ABSTAIN, -counts))  # last key first
    return int(values[order[0]])


# ------------------------------------------------------------------- certificate


def smoothed_double_masking_certify(
    classify: Classifier,
    x,
    label: int,
    masks,
    sigma: float,
    radius: float,
    *,
    key: jax.Array,
    n0: int,
    max_n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    futility_alpha: float | None = None,
    mesh: Mesh | None = None,
) -> SmoothedDoubleMaskingCertificate | list[SmoothedDoubleMaskingCertificate]:
    """Certifies ``label`` for every patch position at l2 radius ``radius``.

    Host driver. Runs :func:`mrs_jax.certify_at` (``n0`` selection draws, then
    the rounds of :func:`mrs_jax.certification.schedule` at the full
    ``alpha``) for every combination ``masks[i] | masks[j]``, ``i <= j``, all
    combinations of a stage in one device program per round; combination ``c``
    with key ``fold_in(key, c)`` gets exactly what ``certify_at(...,
    key=fold_in(key, c))`` returns, up to the first failure in its stage, which
    stops the stage. A combination counts as certified when ``certify_at``
    certifies it and its selection chose ``label`` (``n0 = 0``: it tested
    ``label``).

    Guarantee (proof: ``docs/smoothed_double_masking.md``): with probability
    at least ``1 - alpha``, if ``certified`` then for every ``s x s`` patch
    region lying inside some mask and every change ``d`` zero outside it with
    ``||d||_2 <= radius``, the three-case inference on the exact smoothed
    labels returns ``label`` on ``x + d``; ``radius >= s * sqrt(C)`` covers
    every patch content. Nothing is claimed for patches that lie inside no
    mask.

    Args:
      classify, x, masks, sigma, num_classes, batch_size, mesh: as in
        :func:`smoothed_double_masking`; ``x`` is the clean image, or a batch
        ``[B, H, W, C]`` of clean images, certified image by image.
      label: the class to certify, in ``[0, num_classes)``, chosen without the
        certification draws (the true label, or the defended label from an
        independent key); for a batch, ``[B]`` ints.
      radius: target l2 radius >= 0 inside each combination.
      key: typed PRNG key; for a batch, one (split B ways) or ``[B]`` keys.
      n0: selection draws per combination, >= 1; or 0: no selection, every
        combination tests ``label`` itself (``certify_at``'s ``label``), which
        a fixed ``label`` allows and which saves the selection's draws.
      max_n: the most estimation draws per combination.
      alpha: the probability of a false certificate, in (0, 1); every
        combination is tested at it (an intersection-union test).
      futility_alpha: as in :func:`mrs_jax.certify_at`.

    Returns:
      A :class:`SmoothedDoubleMaskingCertificate` (a list of B for a batch).

    Raises:
      ValueError: an invalid argument, or ``max_n`` draws cannot certify
        ``radius`` at ``alpha`` (:func:`mrs_jax.certification.schedule`).
    """
    problems, keys, single = _prepare(
        classify, x, masks, sigma, num_classes, batch_size, mesh, key
    )
    labels = _checks.label_or_labels(
        label, len(problems), single, problems[0].num_classes, "label"
    )
    settings = dict(
        radius=_checks.nonnegative_float(radius, "radius"),
        n0=_checks.positive_int(n0, "n0", minimum=0),
        max_n=_checks.positive_int(max_n, "max_n"),
        futility_alpha=None
        if futility_alpha is None
        else _checks.probability_level(futility_alpha, "futility_alpha"),
    )
    alpha = _checks.probability_level(alpha)
    schedule_module.schedule(
        settings["radius"], problems[0].sigma, alpha, settings["max_n"]
    )
    certificates = [
        _certify_one(problem, int(label), k, alpha, dict(settings))
        for problem, label, k in zip(problems, labels, keys, strict=True)
    ]
    return certificates[0] if single else certificates


def _certify_one(
    problem: _Problem, label: int, key, alpha: float, settings: dict
) -> SmoothedDoubleMaskingCertificate:
    """The certificate of one image: the one-mask stage, then (if it held) the
    two-mask stage, each stopping at its first failure."""
    count = len(problem.masks)
    pairs, index = _combinations(count)
    one_mask = index[np.arange(count), np.arange(count)]
    stages = (one_mask, np.setdiff1d(np.arange(len(pairs)), one_mask))
    certified = np.zeros(len(pairs), bool)
    p_lower = np.full(len(pairs), np.nan)
    draws = np.zeros(len(pairs), np.int64)
    reasons = np.full(len(pairs), "", object)
    for stage in stages:
        if stage.size == 0:
            break
        results = _smoothed(
            problem,
            pairs[stage],
            _keys(key, stage),
            alpha=alpha,
            label=label if settings["n0"] == 0 else None,
            all_or_nothing=True,
            **settings,
        )
        for c, result in zip(stage, results, strict=True):
            chose = result.selected_label == label
            certified[c] = result.certified and chose
            p_lower[c] = result.p_lower if chose else 0.0
            draws[c] = result.num_samples
            reasons[c] = result.stop_reason
        if not certified[stage].all():
            break  # no later stage can certify the whole
    return SmoothedDoubleMaskingCertificate(
        certified=bool(certified.all()),
        p_lower=float(np.nanmin(p_lower)),
        num_samples=int(draws.sum()),
        pairs=pairs,
        pair_certified=certified,
        pair_p_lower=p_lower,
        pair_num_samples=draws,
        pair_stop_reason=reasons,
    )
