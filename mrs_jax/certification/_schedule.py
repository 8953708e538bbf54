"""The draw schedule of sequential certification at a target radius: the draws
per round and the hits each round needs, fixed before any draw, with the level
split over the rounds (Bonferroni). Derivation: ``docs/sequential.md``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import mrs_jax.certification._bounds as bounds
from mrs_jax.core import checks as _checks

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


def schedule(radius: float, sigma: float, alpha: float, max_n: int) -> Schedule:
    """The rounds :func:`certify_at` draws in, fixed by the target alone.

    Round 1 is the fewest draws that can certify at all at level ``alpha / 2``
    (``(alpha / 2)^(1/N_1) > Phi(radius / sigma)``); it gets half of ``alpha``
    because nearly every image the classifier gets right stops there. Each
    later round doubles the draws, the last is ``max_n``, and they share the
    other half equally. When ``N_1 >= max_n`` there is one round of ``max_n``
    draws at the whole ``alpha`` (``docs/sequential.md``).

    Raises:
      ValueError: ``max_n`` draws cannot certify ``radius`` at ``alpha`` even if
        every draw is the top class (the message gives the fewest that can).

    Examples:
      >>> from mrs_jax.certification import schedule
      >>> plan = schedule(0.3, 0.25, 0.001, 10_000)
      >>> round(plan.threshold, 4)  # Phi(0.3 / 0.25)
      0.8849
      >>> plan.sizes
      (63, 126, 252, 504, 1008, 2016, 4032, 8064, 10000)
      >>> plan.alphas[0], round(sum(plan.alphas), 12)
      (0.0005, 0.001)
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


@functools.lru_cache(maxsize=128)
def _schedule(threshold: float, alpha: float, max_n: int) -> Schedule:
    # Reachability at max_n first: one bound, however far the target is.
    if not _certifies(max_n, max_n, alpha, threshold):
        raise ValueError(
            f"max_n = {max_n} draws cannot certify a lower bound above "
            f"{threshold:.12g} at alpha = {alpha}; it takes at least "
            f"{_fewest_draws(threshold, alpha)}"
        )
    first = _fewest_draws(threshold, alpha / 2)
    if first >= max_n:
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
    exactly as :func:`bounds.clopper_pearson_lower` decides it.

    The bound with every draw a hit grows with ``n``, so the answer is found by
    doubling from the closed form and bisecting: a few dozen bound evaluations
    even where the answer is ~1e12 (a target far beyond ``max_n``), where a
    step of one from the closed form would never end.
    """
    guess = max(1, math.floor(math.log(level) / math.log(threshold)))
    low, high = 0, guess  # _certifies(low) fails (n = 0 has no bound)
    while not _certifies(high, high, level, threshold):
        low, high = high, high * 2
    return _least(lambda n: _certifies(n, n, level, threshold), low, high)


def _hits_needed(threshold: float, n: int, level: float) -> int:
    """The least ``k`` in [1, n] whose lower bound exceeds ``threshold``, or
    ``n + 1`` when none does (the bound grows with ``k``: binary search)."""
    if not _certifies(n, n, level, threshold):
        return n + 1
    # _certifies(n) holds; _certifies(0) does not (k = 0)
    return _least(lambda k: _certifies(k, n, level, threshold), 0, n)


def _least(holds, low: int, high: int) -> int:
    """The least integer in ``(low, high]`` where the monotone ``holds`` is
    true, given ``holds(high)`` and not ``holds(low)`` (bisection)."""
    while high - low > 1:
        mid = (low + high) // 2
        if holds(mid):
            high = mid
        else:
            low = mid
    return high
