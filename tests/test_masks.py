import math

import numpy as np
import pytest

import mrs_jax


def test_square_mask_marks_exactly_the_square():
    mask = mrs_jax.square_mask((8, 10, 3), top=2, left=5, size=3)
    assert mask.shape == (8, 10) and mask.dtype == bool
    assert mask.sum() == 9
    assert mask[2:5, 5:8].all()


@pytest.mark.parametrize(
    "args,match",
    [
        (((8, 8), 6, 0, 3), "leaves"),
        (((8, 8), 0, 0, 9), "does not fit"),
        (((8, 8), -1, 0, 3), "top must be >= 0"),
        (((8, 8), 0, 0, 0), "size must be >= 1"),
        (((8,), 0, 0, 1), "image_shape"),
    ],
)
def test_square_mask_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        mrs_jax.square_mask(*args)


def test_unrestricted_radius_is_worst_case_inside_mask():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 6, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 1, 1, 2)
    # The farthest point is the corner of [0, 1]^d opposite x in every entry.
    far = np.where(x > 0.5, 0.0, 1.0)
    delta = (far - x) * mask[..., None]
    assert mrs_jax.unrestricted_radius(x, mask) == pytest.approx(
        float(np.linalg.norm(delta)), rel=1e-6
    )
    assert mrs_jax.unrestricted_radius(x, mask) <= mrs_jax.patch_l2_bound(2, 3)


def test_patch_l2_bound_values():
    assert mrs_jax.patch_l2_bound(5, 3) == pytest.approx(5 * math.sqrt(3))
    assert mrs_jax.patch_l2_bound(32, 3) == pytest.approx(55.4256, rel=1e-4)
    with pytest.raises(ValueError, match="channels"):
        mrs_jax.patch_l2_bound(5, 0)


def test_unrestricted_radius_checks_mask_shape():
    with pytest.raises(ValueError, match="mask must have shape"):
        mrs_jax.unrestricted_radius(np.zeros((4, 4, 1), np.float32), np.ones((3, 4)))
