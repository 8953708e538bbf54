import jax
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

import mrs_jax
from mrs_jax.certification import _bounds as bounds


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05])
@pytest.mark.parametrize(
    "k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (93, 100), (99_000, 100_000)]
)
def test_clopper_pearson_lower_matches_statsmodels(k, n, alpha):
    expected = proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]
    assert mrs_jax.clopper_pearson_lower(k, n, alpha) == pytest.approx(
        expected, abs=1e-12
    )


def test_clopper_pearson_upper_mirrors_lower():
    assert bounds.clopper_pearson_upper(3, 50, 0.01) == pytest.approx(
        1 - bounds.clopper_pearson_lower(47, 50, 0.01)
    )
    assert bounds.clopper_pearson_upper(50, 50, 0.01) == 1.0


def test_certified_radius_forms():
    assert mrs_jax.certified_radius(0.5, 0.9) == pytest.approx(
        0.5 * stats.norm.ppf(0.9)
    )
    assert mrs_jax.certified_radius(0.5, 0.9, 0.05) == pytest.approx(
        0.25 * (stats.norm.ppf(0.9) - stats.norm.ppf(0.05))
    )
    # With p_upper = 1 - p_lower, Eq. 6 reduces to the one-sided form.
    assert mrs_jax.certified_radius(2.0, 0.8, 0.2) == pytest.approx(
        mrs_jax.certified_radius(2.0, 0.8)
    )
    assert mrs_jax.certified_radius(1.0, 0.5) == 0.0
    assert mrs_jax.certified_radius(1.0, 0.3, 0.4) == 0.0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: mrs_jax.clopper_pearson_lower(11, 10, 0.01), "k must be <= n"),
        (lambda: mrs_jax.clopper_pearson_lower(-1, 10, 0.01), "k must be >= 0"),
        (lambda: mrs_jax.clopper_pearson_lower(1, 0, 0.01), "n must be >= 1"),
        (lambda: mrs_jax.clopper_pearson_lower(1, 10, 1.0), "alpha"),
        (lambda: mrs_jax.clopper_pearson_lower(1, 10, 0.0), "alpha"),
        (lambda: mrs_jax.certified_radius(0.0, 0.9), "sigma"),
        (lambda: mrs_jax.certified_radius(1.0, 1.5), "p_lower"),
        (lambda: mrs_jax.certified_radius(1.0, 0.9, -0.1), "p_upper"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_integer_counts_raise():
    with pytest.raises(TypeError, match="k must be an int"):
        mrs_jax.clopper_pearson_lower(1.5, 10, 0.01)


def test_clopper_pearson_lower_over_arrays_equals_scalar_calls():
    k = np.array([[0, 1, 5], [10, 93, 7]])
    n = np.array([10, 100, 10])  # broadcast against k's rows
    lower = mrs_jax.clopper_pearson_lower(k, n, 0.01)
    assert lower.shape == (2, 3)
    for (i, j), value in np.ndenumerate(lower):
        assert value == bounds.clopper_pearson_lower(int(k[i, j]), int(n[j]), 0.01)
    with pytest.raises(ValueError, match="k must be <= n"):
        mrs_jax.clopper_pearson_lower(np.array([11]), 10, 0.01)
    with pytest.raises(TypeError, match="integer"):
        mrs_jax.clopper_pearson_lower(np.array([1.5]), 10, 0.01)


def test_clopper_pearson_lower_refuses_tracers():
    with pytest.raises(TypeError, match="host step"):
        jax.jit(lambda k: mrs_jax.clopper_pearson_lower(k, 10, 0.01))(3)
