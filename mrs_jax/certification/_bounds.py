"""Clopper-Pearson bounds and certified radii (Cohen et al. 2019, Algorithm 1).

The bounds are host steps with scipy on the per-class counts;
``certified_radius`` is a host step on numbers and a device function on
tracers. Derivation: ``docs/masked_smoothing.md``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from mrs_jax.core import checks as _checks


def _stats():
    # scipy.stats takes ~0.5 s to import; only the host-side bounds need it.
    from scipy import stats

    return stats


def clopper_pearson_lower(k, n, alpha: float):
    """One-sided Clopper-Pearson lower bound on a binomial proportion.

    Holds with probability at least ``1 - alpha``: the ``alpha`` quantile of
    ``Beta(k, n - k + 1)``, which equals statsmodels'
    ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]``.

    A host step (scipy): ``k`` and ``n`` must be concrete, never tracers. They
    may be ints, or integer arrays (broadcast together) for a batch of bounds
    in one scipy call; every value is checked.

    Args:
      k: successes, ``0 <= k <= n``: an int or an integer array.
      n: trials, ``n >= 1``: an int or an integer array.
      alpha: the allowed failure probability, in (0, 1).

    Returns:
      The lower bound in [0, 1] (exactly 0 where ``k == 0``): a float for int
      ``k`` and ``n``, else a float64 array of their broadcast shape.

    Raises:
      ValueError, TypeError: naming the argument: ``k``, ``n`` or ``alpha`` out
        of range or of the wrong type, or traced (not concrete) counts.

    Examples:
      >>> import numpy as np
      >>> from mrs_jax.certification import clopper_pearson_lower
      >>> round(clopper_pearson_lower(100, 100, 0.001), 4)  # 0.001 ** (1 / 100)
      0.9333
      >>> round(clopper_pearson_lower(90, 100, 0.001), 4)
      0.7753
      >>> clopper_pearson_lower(np.array([0, 50, 100]), 100, 0.001).round(3).tolist()
      [0.0, 0.345, 0.933]
    """
    if _is_array(k) or _is_array(n):
        return _clopper_pearson_lower_array(k, n, alpha)
    k = _checks.positive_int(k, "k", minimum=0)
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    if k > n:
        raise ValueError(f"k must be <= n, got k={k}, n={n}")
    if k == 0:
        return 0.0
    return float(_stats().beta.ppf(alpha, k, n - k + 1))


def _is_array(value) -> bool:
    if _checks.is_traced(value):
        raise TypeError(
            "clopper_pearson_lower is a host step (scipy): pass concrete counts, "
            "not traced values (call it outside jit, on the counts)"
        )
    return isinstance(value, (np.ndarray, jax.Array, list, tuple))


def _clopper_pearson_lower_array(k, n, alpha) -> np.ndarray:
    """``clopper_pearson_lower`` elementwise over integer arrays ``k``, ``n``."""
    k, n = np.asarray(k), np.asarray(n)
    for name, arr in (("k", k), ("n", n)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be an int or integer array, got {arr.dtype}")
    alpha = _checks.probability_level(alpha)
    try:
        k, n = np.broadcast_arrays(k, n)
    except ValueError as error:
        raise ValueError(f"k {k.shape} and n {n.shape} must broadcast") from error
    if k.size and k.min() < 0:
        raise ValueError("k must be >= 0")
    if n.size and n.min() < 1:
        raise ValueError("n must be >= 1")
    if np.any(k > n):
        raise ValueError("k must be <= n")
    positive = np.maximum(k, 1)  # beta.ppf needs a > 0; k == 0 is set to 0 below
    lower = _stats().beta.ppf(alpha, positive, n - positive + 1)
    return np.where(k == 0, 0.0, lower)


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
) -> float | jax.Array:
    """The l2 radius within which the smoothed prediction cannot change.

    ``sigma * Phi^-1(p_lower)`` (Cohen et al.'s CERTIFY), or, when the runner-up's
    upper bound is given, Eq. 6 of the paper:
    ``sigma / 2 * (Phi^-1(p_lower) - Phi^-1(p_upper))``. The radius is in the
    same units as ``sigma`` ([0, 1] pixel l2) and covers only perturbations inside
    the smoothing mask. Returns 0.0 when the bound does not exceed 1/2 (or
    ``p_upper``), i.e. nothing is certified.

    Two paths. Given Python or numpy numbers it is a host step: values are
    checked (``sigma > 0`` finite, bounds in [0, 1]) and the radius is a float
    from scipy, in float64. Given a jax tracer for any argument (under ``jit``,
    ``vmap`` or ``grad``) it is a device function: the dtypes are checked at
    trace time, no value is (they are unknown), arrays broadcast elementwise, and
    the radius is a jax array from ``jax.scipy.special.ndtri`` (float32 unless
    x64 is enabled).

    Args:
      sigma: noise standard deviation, > 0.
      p_lower: lower confidence bound on the top class's probability, in [0, 1].
      p_upper: upper bound on the runner-up's probability, in [0, 1], or None.

    Returns:
      The radius (>= 0): a float, or a jax array on the traced path.

    Raises:
      ValueError: on the host path, ``sigma`` not finite and > 0 or a bound
        outside [0, 1].
      TypeError: an argument that is not a real number or array.

    Examples:
      >>> import jax
      >>> from mrs_jax.certification import certified_radius
      >>> round(certified_radius(0.25, 0.99), 4)  # 0.25 * Phi^-1(0.99)
      0.5816
      >>> certified_radius(0.25, 0.4)  # no majority: nothing certified
      0.0
      >>> round(certified_radius(0.25, 0.9, 0.05), 4)  # two-sided, Eq. 6
      0.3658
      >>> round(float(jax.jit(certified_radius)(0.25, 0.99)), 4)  # device path
      0.5816
    """
    if any(_checks.is_traced(v) for v in (sigma, p_lower, p_upper)):
        return _traced_radius(sigma, p_lower, p_upper)
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


def _traced_radius(sigma, p_lower, p_upper) -> jax.Array:
    """``certified_radius`` on device: the same formulas with ``ndtri``."""
    sigma = _real_array(sigma, "sigma")
    p_lower = _real_array(p_lower, "p_lower")
    if p_upper is None:
        radius = sigma * ndtri(p_lower)
        return jnp.where(p_lower > 0.5, radius, 0.0)
    p_upper = _real_array(p_upper, "p_upper")
    radius = sigma / 2.0 * (ndtri(p_lower) - ndtri(p_upper))
    return jnp.where(p_lower > p_upper, radius, 0.0)


def _real_array(value, name: str) -> jax.Array:
    """``value`` as a floating jax array; a trace-time dtype check only."""
    try:
        arr = jnp.asarray(value)
    except TypeError as error:
        raise TypeError(
            f"{name} must be a real number or array, got {type(value).__name__}"
        ) from error
    real = jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(
        arr.dtype, jnp.integer
    )
    if not real or arr.dtype == jnp.bool_:
        raise TypeError(f"{name} must be a real number or array, got {arr.dtype}")
    return arr.astype(jnp.result_type(float))


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
