"""Certify a target radius with as few draws as the answer needs.

:func:`certify_at` decides whether the mask-smoothed prediction at ``x`` is
certified at l2 radius ``radius``. The estimation draws come in rounds whose
sizes and levels are fixed before any draw (:func:`schedule`) and stop as soon
as the decision is known; the union bound over the pre-set rounds keeps the
probability of a false certificate at most ``alpha``. Derivation and proof:
``docs/sequential.md``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

import mrs_jax.certification._counting as counting
import mrs_jax.certification._smoothing as smoothing
from mrs_jax.certification._schedule import Schedule, schedule
from mrs_jax.certification._smoothing import ABSTAIN, Classifier
from mrs_jax.core import checks as _checks, sharding


class TargetCertificate(NamedTuple):
    """The outcome of :func:`certify_at`.

    Attributes:
      label: the selected class when ``certified``, else ``ABSTAIN`` (-1), so
        that ``label == y`` means "certified and correct" as for
        :func:`mrs_jax.certify`.
      certified: whether the smoothed prediction is certified at l2 radius
        ``>= radius`` inside the mask.
      p_lower: the Clopper-Pearson lower bound on the selected class's
        probability at the last round, at that round's level. It is a valid
        ``1 - alpha`` lower bound whatever round the draws stopped at (see
        :func:`certify_at`), so ``bounds.certified_radius(sigma, p_lower)`` is a
        valid certified radius too.
      num_samples: every draw made, the ``n0`` selection draws included.
      selected_label: the top class of the ``n0`` selection draws, or the
        given ``label`` (the class whose probability was estimated), certified
        or not.
      rounds: estimation rounds drawn.
      stop_reason: ``"certified"``; ``"out_of_reach"``: no later round could
        certify even if every remaining draw were the selected class (also the
        reason after the last round); or ``"upper_bound"``: the
        ``futility_alpha`` upper bound fell below the threshold; or
        ``"abandoned"``: undecided when another image of an ``all_or_nothing``
        batch failed.
      selection_counts: ``[K]`` counts of the ``n0`` selection draws (zeros
        where ``label`` was given).
      estimate_counts: ``[K]`` counts of the estimation draws made.
    """

    label: int
    certified: bool
    p_lower: float
    num_samples: int
    selected_label: int
    rounds: int
    stop_reason: str
    selection_counts: np.ndarray
    estimate_counts: np.ndarray


def certify_at(
    classify: Classifier,
    x,
    mask,
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
    label=None,
    all_or_nothing: bool = False,
    mesh: Mesh | None = None,
) -> TargetCertificate | list[TargetCertificate]:
    """Host driver: decides whether the mask-smoothed prediction is certified
    at ``radius``, for one image or a batch.

    ``n0`` draws (from ``select_key``) select the top class ``c``, exactly as
    :func:`mrs_jax.certify` does with the same key. Estimation draws (from
    ``estimate_key``, independent of the selection) then come in the rounds of
    :func:`schedule`: after round ``r`` with ``k_r`` of ``N_r`` draws equal to
    ``c``, the prediction is certified when the Clopper-Pearson lower bound at
    ``alpha_r`` exceeds ``Phi(radius / sigma)``, i.e. when CERTIFY would return a
    radius above ``radius``. The draws stop at the first round that certifies,
    or as soon as no later round can (even if every remaining draw were ``c``),
    or, with ``futility_alpha``, when the upper bound at level
    ``futility_alpha * alpha_r / alpha`` falls below the threshold.

    Guarantee: with probability at least ``1 - alpha`` over the draws, if
    ``certified`` then ``g_M(x + d) = selected_label`` for every ``d`` that is
    zero outside the mask with ``||d||_2 <= radius``, however early the draws
    stopped (proof: ``docs/sequential.md``). Nothing is claimed for
    perturbations outside the mask. The reported ``p_lower`` is a valid
    ``1 - alpha`` bound too.

    A batch runs its rounds in lockstep over the images still undecided; image
    ``b`` gets exactly the one-image result with ``key=keys[b]``, and the
    guarantee holds for each image. Results are deterministic per ``key`` and do
    not depend on ``batch_size`` or the number of devices.

    Args:
      classify, x, mask, sigma, key, num_classes, batch_size, mesh: as in
        :func:`mrs_jax.certify` (one image or a batch).
      radius: the target l2 radius inside the mask, >= 0 (0: certified iff
        the lower bound exceeds 1/2); e.g. ``patch_l2_bound(s, C)`` to
        cover every ``s x s`` patch inside the mask.
      n0: selection draws, >= 1.
      max_n: the most estimation draws, <= 2**31 - 1; ``certify_at`` decides as
        :func:`mrs_jax.certify` with ``n = max_n`` would, up to the alpha spent
        on earlier rounds.
      alpha: the allowed probability of a false certificate, in (0, 1).
      futility_alpha: None (default) stops early only when certifying has become
        impossible; a level in (0, 1) also stops once the selected class's
        probability is below the threshold at that confidence, which saves
        most draws on images that will not certify.
      label: None (default): the ``n0`` selection draws choose the class. A
        class (or ``[B]`` classes for a batch) in ``[0, num_classes)`` fixed
        without these draws (a true label, or a prediction from another key):
        that class is tested directly and no selection draws are made, so
        ``n0`` must be 0. The guarantee is the same, for that class.
      all_or_nothing: False (default): each image of a batch stops on its own.
        True: the whole batch stops as soon as one image stops without a
        certificate, the images still undecided reporting ``"abandoned"``
        (not certified). For a caller that needs every image certified (an
        intersection of certificates, :func:`smoothed_double_masking_certify`):
        stopping draws never adds a certificate, so the guarantee is unchanged.

    Returns:
      A :class:`TargetCertificate` (a list of them for a batch).

    Raises:
      ValueError: as :func:`schedule`, for any invalid argument, or a broken
        classifier (NaN or inf logits).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from mrs_jax.certification import certify_at, square_mask
      >>> def classify(images):  # [B, 4, 4, 1] -> [B, 2]
      ...     score = jnp.sum(images, axis=(1, 2, 3)) - 4.0
      ...     return jnp.stack([-score, score], axis=-1)
      >>> x = np.full((4, 4, 1), 0.75, np.float32)
      >>> result = certify_at(classify, x, square_mask(x.shape, 1, 1, 2), 0.25,
      ...                     0.3, key=jax.random.key(0), n0=100, max_n=10_000,
      ...                     alpha=0.001, num_classes=2, batch_size=100)
      >>> print(result.certified, result.stop_reason, result.rounds)
      True certified 1
      >>> result.num_samples  # n0 + the first round's 63 draws, not 10,100
      163
    """
    batch = smoothing.batch_inputs(
        classify, x, mask, sigma, key, num_classes, batch_size, mesh
    )
    labels = _fixed_labels(label, n0, batch)
    n0 = 0 if labels is not None else smoothing.draws(n0, "n0")
    max_n = smoothing.draws(max_n, "max_n")
    if futility_alpha is not None:
        futility_alpha = _checks.probability_level(futility_alpha, "futility_alpha")
    all_or_nothing = _checks.boolean(all_or_nothing, "all_or_nothing")
    plan = schedule(radius, sigma, alpha, max_n)
    alpha = _checks.probability_level(alpha)
    select_keys, estimate_keys = jax.vmap(jax.random.split, out_axes=1)(batch.keys)
    counter = batch.counter()
    if labels is None:
        selection = batch.count(counter, select_keys, n0)
        tops = np.argmax(selection, axis=1)
    else:
        selection = np.zeros((len(labels), batch.num_classes), np.int64)
        tops = labels
    rounds = _Rounds(plan, alpha, futility_alpha, tops)
    _draw_rounds(rounds, counter, estimate_keys, batch, all_or_nothing)
    return batch.result(
        [rounds.certificate(b, n0, selection[b]) for b in range(len(tops))]
    )


def _fixed_labels(label, n0, batch) -> np.ndarray | None:
    """``label`` as ``[B]`` ints (None: the selection draws choose), with n0 = 0."""
    if label is None:
        return None
    count = len(batch.keys)
    values = np.asarray(label)
    if values.ndim == 0:
        values = np.full(count, values)
    if values.shape != (count,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"label must be an int class or {count} int classes (one per image), "
            f"got {label!r}"
        )
    if values.min() < 0 or values.max() >= batch.num_classes:
        raise ValueError(
            f"label must lie in [0, num_classes = {batch.num_classes}), got {label!r}"
        )
    if isinstance(n0, bool) or n0 != 0:
        raise ValueError(
            f"n0 must be 0 when label is given (no selection draws are made), "
            f"got {n0!r}"
        )
    return values.astype(np.int64)


class _Rounds:
    """The estimation rounds of a batch: counts so far and each image's
    decision ``(reason, round, p_lower)`` once it stops."""

    def __init__(self, plan: Schedule, alpha, futility_alpha, tops: np.ndarray):
        self.plan, self.alpha, self.futility_alpha = plan, alpha, futility_alpha
        self.tops = tops
        self.estimate: np.ndarray | None = None
        self.decided: dict[int, tuple[str, int, float]] = {}
        self.last: dict[int, tuple[int, float]] = {}  # undecided: round, bound

    def active(self) -> np.ndarray:
        return np.array([b not in self.decided for b in range(len(self.tops))])

    def test(self, r: int, active: np.ndarray) -> None:
        for b in np.flatnonzero(active):
            hits = int(self.estimate[b, self.tops[b]])
            reason, p_lower = self.plan.stop_reason(
                r, hits, self.alpha, self.futility_alpha
            )
            if reason is not None:
                self.decided[int(b)] = (reason, r, p_lower)
            else:
                self.last[int(b)] = (r, p_lower)

    def failed(self) -> bool:
        return any(reason != "certified" for reason, _, _ in self.decided.values())

    def abandon(self) -> None:
        """Decides every undecided image as ``"abandoned"`` at its last round."""
        for b in np.flatnonzero(self.active()):
            r, p_lower = self.last[int(b)]
            self.decided[int(b)] = ("abandoned", r, p_lower)

    def certificate(self, b: int, n0: int, selection) -> TargetCertificate:
        reason, r, p_lower = self.decided[b]
        certified = reason == "certified"
        top = int(self.tops[b])
        return TargetCertificate(
            label=top if certified else ABSTAIN,
            certified=certified,
            p_lower=p_lower,
            num_samples=n0 + self.plan.sizes[r],
            selected_label=top,
            rounds=r + 1,
            stop_reason=reason,
            selection_counts=selection,
            estimate_counts=self.estimate[b],
        )


def _draw_rounds(
    rounds: _Rounds, counter, estimate_keys, batch, all_or_nothing: bool
) -> None:
    """Draws the rounds of :func:`schedule` until every image has decided (with
    ``all_or_nothing``, until one has failed: the rest are abandoned).

    Two chunk sizes, so at most two compiled programs whatever the rounds:
    ``batch_size`` pairs for rounds drawing at least that many in all, and
    ``min(batch_size, B * N_1)`` for the shorter early rounds (for one image:
    the first round's size), which together waste less than one chunk each.
    """
    count = len(rounds.tops)
    plan = rounds.plan
    rounds.estimate = np.zeros((count, batch.num_classes), np.int64)
    small = counting.chunk_for(count * plan.sizes[0], batch.batch_size, batch.mesh)
    big = sharding.round_up_to_devices(batch.batch_size, batch.mesh)
    drawn = 0
    for r, size in enumerate(plan.sizes):
        active = rounds.active()
        nums = np.where(active, size - drawn, 0)
        chunk = big if nums.sum() >= batch.batch_size else small
        rounds.estimate += counter.count(
            estimate_keys, np.full(count, drawn), nums, chunk
        )
        drawn = size
        rounds.test(r, active)
        if len(rounds.decided) == count:
            return
        if all_or_nothing and rounds.failed():
            rounds.abandon()
            return
