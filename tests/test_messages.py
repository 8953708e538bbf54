"""Messages say what to fix: values are not rounded away, bfloat16 is a float."""

import jax.numpy as jnp
import numpy as np
import pytest

import mrs_jax


def test_a_value_just_outside_the_unit_range_is_shown_as_it_is():
    x = np.full((8, 8, 3), 0.5, np.float32)
    x[0, 0, 0] = 1.0001
    mask = mrs_jax.square_mask(x.shape, 2, 2, 3)
    with pytest.raises(ValueError, match=r"to 1\.0001\b"):
        mrs_jax.unrestricted_radius(x, mask)


def test_bfloat16_images_are_floats():
    x = jnp.full((8, 8, 3), 0.5, jnp.bfloat16)
    mask = mrs_jax.square_mask(x.shape, 2, 2, 3)
    assert mrs_jax.unrestricted_radius(x, mask) > 0
