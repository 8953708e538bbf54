"""Certify a target radius with as few draws as the answer needs.

:func:`certify_at` answers one question: is the mask-smoothed prediction at ``x``
certified at l2 radius ``radius`` (``MRS_SPEC.md`` sections 2-3)? Fixed-n CERTIFY
spends the paper's 100,000 estimation draws on every image; an image the
classifier gets right under nearly every draw is decided after a few dozen
(``sigma = 7``, ``radius = 5 * sqrt(3)``: the bound must exceed
``Phi(8.66 / 7) = 0.892``, which ``k = n`` draws reach once
``alpha^(1/n) > 0.892``, i.e. ``n >= 61`` at ``alpha = 0.001``).

The estimation draws come in rounds whose sizes and confidence levels are fixed
before any draw (:func:`schedule`); the estimate is tested after each round and
the draws stop as soon as the decision is known. The union bound over the
pre-set rounds keeps the probability of a false certificate at most ``alpha``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from mrs_jax import _checks, bounds, counting, sharding, smoothing
from mrs_jax.smoothing import ABSTAIN, Classifier

# Each round doubles the draws so far: at most twice the draws the decision
# needed, in log2(max_n / first round) + 1 rounds (12 for 100,000 / 67).
_GROWTH = 2


class Schedule(NamedTuple):
    """Estimation rounds fixed before any draw, from the target alone.

    Attributes:
      threshold: ``Phi(radius / sigma)``; round ``r`` certifies when its
        Clopper-Pearson lower bound at ``alphas[r]`` exceeds it.
      sizes: cumulative estimation draws ``N_1 < ... < N_R = max_n``.
      alphas: each round's failure probability; they sum to at most ``alpha``.
      hits_needed: the fewest top-class draws among ``sizes[r]`` that certify at
        round ``r`` (``sizes[r] + 1`` where no count can).
    """

    threshold: float
    sizes: tuple[int, ...]
    alphas: tuple[float, ...]
    hits_needed: tuple[int, ...]

    def stop_reason(
        self, r: int, hits: int, alpha: float, futility_alpha: float | None
    ) -> tuple[str | None, float]:
        """The decision after round ``r`` with ``hits`` of ``sizes[r]`` draws on
        the selected class: ``(reason, p_lower)``, reason None to draw on.

        ``"certified"`` when the lower bound at ``alphas[r]`` exceeds the
        threshold; ``"out_of_reach"`` when the misses so far exceed what every
        later round allows (so no later round can certify: also the reason after
        the last round); ``"upper_bound"`` when, with ``futility_alpha``, the
        upper bound at ``futility_alpha * alphas[r] / alpha`` is below it.
        """
        size, level = self.sizes[r], self.alphas[r]
        p_lower = bounds.clopper_pearson_lower(hits, size, level)
        # A later round can still certify iff the misses so far are at most the
        # misses it allows.
        later = zip(self.sizes[r + 1 :], self.hits_needed[r + 1 :], strict=True)
        allowed_later = max((n - need for n, need in later), default=-1)
        if p_lower > self.threshold:
            return "certified", p_lower
        if size - hits > allowed_later:
            return "out_of_reach", p_lower
        if futility_alpha is not None and (
            bounds.clopper_pearson_upper(hits, size, futility_alpha * level / alpha)
            < self.threshold
        ):
            return "upper_bound", p_lower
        return None, p_lower


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
      selected_label: the top class of the ``n0`` selection draws (the class
        whose probability was estimated), certified or not.
      rounds: estimation rounds drawn.
      stop_reason: ``"certified"``; ``"out_of_reach"``: no later round could
        certify even if every remaining draw were the selected class (also the
        reason after the last round); or ``"upper_bound"``: the
        ``futility_alpha`` upper bound fell below the threshold.
      selection_counts: ``[K]`` counts of the ``n0`` selection draws.
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


def schedule(radius: float, sigma: float, alpha: float, max_n: int) -> Schedule:
    """The rounds :func:`certify_at` draws in, fixed by the target alone.

    Round 1 is the fewest draws that can certify at all at level ``alpha / 2``
    (``(alpha / 2)^(1/N_1) > Phi(radius / sigma)``); it gets half of ``alpha``
    because nearly every image the classifier gets right stops there. Each
    later round doubles the draws, the last is ``max_n``, and they share the
    other half equally. When ``N_1 >= max_n`` there is one round of ``max_n``
    draws at the whole ``alpha``.

    Raises:
      ValueError: ``max_n`` draws cannot certify ``radius`` at ``alpha`` even if
        every draw is the top class (the message gives the fewest that can).
    """
    radius = _checks.nonnegative_float(radius, "radius")
    sigma = _checks.positive_float(sigma, "sigma")
    alpha = _checks.probability_level(alpha)
    max_n = _checks.positive_int(max_n, "max_n")
    threshold = 0.5 if radius == 0 else bounds.normal_cdf(radius / sigma)
    if threshold >= 1.0:
        raise ValueError(
            f"radius {radius} is beyond what any number of draws can certify at "
            f"sigma {sigma}: Phi(radius / sigma) rounds to 1"
        )
    return _schedule(threshold, alpha, max_n)


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
    mesh: Mesh | None = None,
) -> TargetCertificate:
    """Decides whether the mask-smoothed prediction is certified at ``radius``.

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
    zero outside the mask with ``||d||_2 <= radius``. Nothing is claimed for
    perturbations outside the mask.

    Why stopping keeps it: round ``r`` counts the first ``N_r`` draws of one
    fixed i.i.d. sequence (draw ``i`` uses ``fold_in(estimate_key, i)``, so the
    counts are cumulative and equal CERTIFY's estimate counts for ``n = N_r``).
    The sizes and levels are fixed before any draw, so for each ``r`` on its
    own the bound is an ordinary Clopper-Pearson bound:
    ``P(L_r > p_c) <= alpha_r``. A false certificate at whichever round the
    draws stop needs ``L_r > p_c`` for some ``r``, which by the union bound has
    probability at most ``sum alpha_r <= alpha``, however the stopping depends
    on the draws; rounds never reached only make it rarer. The same argument
    makes the reported ``p_lower`` a valid ``1 - alpha`` bound. Stopping for
    futility never certifies, so it cannot add false certificates;
    ``futility_alpha`` only bounds how often it gives up on an image whose
    ``p_c`` exceeds the threshold. Results are deterministic per ``key`` and do
    not depend on ``batch_size`` or the number of devices.

    Args:
      classify, x, mask, sigma, num_classes, batch_size, mesh: as in
        :func:`mrs_jax.sample_counts`.
      radius: the target l2 radius inside the mask, >= 0 (0: certified iff
        the lower bound exceeds 1/2); e.g. ``masks.patch_l2_bound(s, C)`` to
        cover every ``s x s`` patch inside the mask.
      key: typed PRNG key; split into selection and estimation keys.
      n0: selection draws, >= 1.
      max_n: the most estimation draws; ``certify_at`` decides as
        :func:`mrs_jax.certify` with ``n = max_n`` would, up to the alpha spent
        on earlier rounds.
      alpha: the allowed probability of a false certificate, in (0, 1).
      futility_alpha: None (default) stops early only when certifying has become
        impossible; a level in (0, 1) also stops once the selected class's
        probability is below the threshold at that confidence, which saves
        most draws on images that will not certify.

    Returns:
      A :class:`TargetCertificate`.

    Raises:
      ValueError: as :func:`schedule`, or for any invalid argument.
    """
    _checks.callable_(classify, "classify")
    x = _checks.image(x)
    mask = _checks.mask(mask, x.shape)
    if not mask.any():
        raise ValueError("mask is all False: there is no pixel to smooth or certify")
    sigma = _checks.positive_float(sigma, "sigma")
    n0 = _checks.positive_int(n0, "n0")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    if futility_alpha is not None:
        futility_alpha = _checks.probability_level(futility_alpha, "futility_alpha")
    key = _checks.prng_key(key)
    mesh = sharding.sample_mesh() if mesh is None else mesh
    _checks.mesh_with_axis(mesh, sharding.SAMPLES)
    plan = schedule(radius, sigma, alpha, max_n)

    select_key, estimate_key = jax.random.split(key)
    common = dict(num_classes=num_classes, batch_size=batch_size, mesh=mesh)
    selection = smoothing.sample_counts(
        classify, x, mask, sigma, key=select_key, num=n0, **common
    )
    top = int(np.argmax(selection))
    count = _round_counter(
        classify, x, mask, sigma, key=estimate_key, first=plan.sizes[0], **common
    )
    estimate = np.zeros(num_classes, np.int64)
    drawn = 0
    for r, size in enumerate(plan.sizes):
        estimate += count(drawn, size - drawn)
        drawn = size
        reason, p_lower = plan.stop_reason(r, int(estimate[top]), alpha, futility_alpha)
        if reason is not None:
            break
    certified = reason == "certified"
    return TargetCertificate(
        label=top if certified else ABSTAIN,
        certified=certified,
        p_lower=p_lower,
        num_samples=n0 + drawn,
        selected_label=top,
        rounds=r + 1,
        stop_reason=reason,
        selection_counts=selection,
        estimate_counts=estimate,
    )


@functools.lru_cache(maxsize=128)
def _schedule(threshold: float, alpha: float, max_n: int) -> Schedule:
    first = _fewest_draws(threshold, alpha / 2)
    if first >= max_n:
        if _fewest_draws(threshold, alpha) > max_n:
            raise ValueError(
                f"max_n = {max_n} draws cannot certify a lower bound above "
                f"{threshold:.6g} at alpha = {alpha}; it takes at least "
                f"{_fewest_draws(threshold, alpha)}"
            )
        sizes, alphas = [max_n], [alpha]
    else:
        sizes = [first]
        while sizes[-1] * _GROWTH < max_n:
            sizes.append(sizes[-1] * _GROWTH)
        sizes.append(max_n)
        later = alpha / 2 / (len(sizes) - 1)
        alphas = [alpha / 2] + [later] * (len(sizes) - 1)
    needed = tuple(
        _hits_needed(threshold, n, a) for n, a in zip(sizes, alphas, strict=True)
    )
    return Schedule(threshold, tuple(sizes), tuple(alphas), needed)


def _certifies(hits: int, n: int, level: float, threshold: float) -> bool:
    return bounds.clopper_pearson_lower(hits, n, level) > threshold


def _fewest_draws(threshold: float, level: float) -> int:
    """The least ``n`` with ``level^(1/n) > threshold`` (all ``n`` draws hit),
    adjusted to agree exactly with :func:`bounds.clopper_pearson_lower`."""
    n = max(1, math.floor(math.log(level) / math.log(threshold)) + 1)
    while not _certifies(n, n, level, threshold):
        n += 1
    while n > 1 and _certifies(n - 1, n - 1, level, threshold):
        n -= 1
    return n


def _hits_needed(threshold: float, n: int, level: float) -> int:
    """The least ``k`` in [1, n] whose lower bound exceeds ``threshold``, or
    ``n + 1`` when none does (the bound grows with ``k``: binary search)."""
    if not _certifies(n, n, level, threshold):
        return n + 1
    low, high = 0, n  # _certifies(high) holds; _certifies(low) does not (k = 0)
    while high - low > 1:
        mid = (low + high) // 2
        if _certifies(mid, n, level, threshold):
            high = mid
        else:
            low = mid
    return high


def _round_counter(
    classify, x, mask, sigma, *, key, first, num_classes, batch_size, mesh
):
    """``count(start, num)``: the ``[K]`` counts of draws ``start .. start+num-1``
    (``mrs_jax.counting.range_counter``: ``count(0, n)`` equals
    ``sample_counts(..., num=n)`` and consecutive ranges add up to it).

    Two chunk sizes, so two compiled programs whatever the rounds: ``batch_size``
    for ranges at least that long, and ``min(batch_size, first)`` (the first
    round's size) for the shorter early rounds, which together waste less than
    one chunk each.
    """
    big = sharding.round_up_to_devices(batch_size, mesh)
    small = sharding.round_up_to_devices(min(batch_size, first), mesh)
    count = counting.range_counter(
        classify, x, mask, sigma, key=key, num_classes=num_classes, mesh=mesh
    )
    return lambda start, num: count(start, num, big if num >= batch_size else small)
