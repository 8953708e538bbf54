"""Huge sample counts, synthetic data settings and a
jax scalar sigma, refused (or accepted) before any work starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _job_helpers import tiny_classifier, tiny_config

import mrs_jax


@pytest.mark.parametrize("field", ["n", "n0"])
def test_a_sample_count_beyond_int32_draw_indices_is_refused_in_the_config(field):
    with pytest.raises(ValueError, match=rf"{field} must be <= 2\*\*31 - 1"):
        tiny_config(**{field: 10**10})
    assert tiny_config(**{field: 2**31 - 1}).n0 > 0  # the largest that counts


def test_certify_refuses_n_beyond_int32_before_drawing():
    x = np.full((16, 16, 3), 0.5, np.float32)
    mask = np.ones((16, 16), bool)
    args = dict(key=jax.random.key(0), n0=10, alpha=0.01, num_classes=4, batch_size=8)
    for function, extra in ((mrs_jax.certify, {"n": 2**31}),
                            (mrs_jax.predict, {"n": 2**31}),
                            (mrs_jax.certify_at, {"max_n": 2**31})):
        positional = (tiny_classifier(), x, mask, 0.5)
        if function is mrs_jax.certify_at:
            positional += (0.1,)
        kwargs = dict(args, **extra)
        if function is mrs_jax.predict:
            kwargs.pop("n0")
        with pytest.raises(ValueError, match=r"must be <= 2\*\*31 - 1"):
            function(*positional, **kwargs)


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(synthetic_shape=(32, 32, 0)), "synthetic_shape"),
        (dict(synthetic_shape=(32, 32)), "synthetic_shape"),
        (dict(synthetic_shape=(32, 32, 2)), "1 or 3 channels"),
        (dict(synthetic_classes=1), "synthetic_classes must be >= 2"),
        (dict(synthetic_examples=0), "synthetic_examples must be >= 1"),
        (dict(synthetic_examples=10**9), "more than the"),
    ],
)
def test_synthetic_settings_are_checked(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


def test_a_jax_scalar_sigma_is_accepted_like_a_float():
    x = np.full((16, 16, 3), 0.5, np.float32)
    mask = mrs_jax.square_mask(x.shape, 2, 2, 4)
    args = dict(key=jax.random.key(1), n0=10, n=50, alpha=0.01, num_classes=4,
                batch_size=16)
    as_jax = mrs_jax.certify(tiny_classifier(), x, mask, jnp.float32(0.5), **args)
    as_float = mrs_jax.certify(tiny_classifier(), x, mask, 0.5, **args)
    np.testing.assert_array_equal(as_jax.estimate_counts, as_float.estimate_counts)
    config = tiny_config(sigma=jnp.float32(0.5))
    assert type(config.sigma) is float and config.sigma == 0.5
    with pytest.raises(TypeError, match="sigma must be a real number"):
        mrs_jax.certify(tiny_classifier(), x, mask, jnp.array([0.5]), **args)
