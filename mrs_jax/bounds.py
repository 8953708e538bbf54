"""Confidence bounds and certified radii, computed on the host with scipy.

Only the per-class counts come back from the device; everything here is cheap
scalar statistics (Cohen et al. 2019, Algorithm 1; ``MRS_SPEC.md`` section 3).
"""

from __future__ import annotations

import math

import numpy as np

from mrs_jax import _checks


def _stats():
    # scipy.stats takes ~0.5 s to import; only the host-side bounds need it.
    from scipy import stats

    return stats


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound on a binomial proportion.

    Holds with probability at least ``1 - alpha``: the ``alpha`` quantile of
    ``Beta(k, n - k + 1)``, which equals statsmodels'
    ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]``.

    Args:
      k: successes, ``0 <= k <= n``.
      n: trials, ``n >= 1``.
      alpha: the allowed failure probability, in (0, 1).

    Returns:
      The lower bound in [0, 1] (exactly 0 when ``k == 0``).
    """
    k = _checks.positive_int(k, "k", minimum=0)
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    if k == 0:
        return 0.0
    return float(_stats().beta.ppf(alpha, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound (the ``1 - alpha`` quantile of
    ``Beta(k + 1, n - k)``); exactly 1 when ``k == n``."""
    k = _checks.positive_int(k, "k", minimum=0)
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    if k == n:
        return 1.0
    return float(_stats().beta.ppf(1.0 - alpha, k + 1, n - k))


def certified_radius(
    sigma: float, p_lower: float, p_upper: float | None = None
) -> float:
    """The l2 radius within which the smoothed prediction cannot change.

    ``sigma * Phi^-1(p_lower)`` (Cohen et al.'s CERTIFY), or, when the runner-up's
    upper bound is given, Eq. 6 of the paper:
    ``sigma / 2 * (Phi^-1(p_lower) - Phi^-1(p_upper))``. The radius is in the
    same units as ``sigma`` ([0, 1] pixel l2) and covers only perturbations inside
    the smoothing mask. Returns 0.0 when the bound does not exceed 1/2 (or
    ``p_upper``), i.e. nothing is certified.
    """
    sigma = _checks.positive_float(sigma, "sigma")
    p_lower = _unit(p_lower, "p_lower")
    if p_upper is None:
        if p_lower <= 0.5:
            return 0.0
        return float(sigma * _stats().norm.ppf(p_lower))
    p_upper = _unit(p_upper, "p_upper")
    if p_lower <= p_upper:
        return 0.0
    norm = _stats().norm
    return float(sigma / 2.0 * (norm.ppf(p_lower) - norm.ppf(p_upper)))


def normal_cdf(z: float) -> float:
    """The standard normal ``Phi(z)``: the bound an l2 radius ``z * sigma`` needs."""
    return float(_stats().norm.cdf(z))


def binomial_p_value(n_a: int, n_b: int) -> float:
    """Two-sided ``binomtest(n_a, n_a + n_b, 0.5)`` p-value (1.0 when both are 0)."""
    if n_a + n_b == 0:
        return 1.0
    return float(_stats().binomtest(int(n_a), int(n_a + n_b), 0.5).pvalue)


def _unit(p, name: str) -> float:
    v = float(np.asarray(p))
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    return v
