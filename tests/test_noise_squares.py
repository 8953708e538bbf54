"""Noise in two squares: the training augmentation of masked-noise double masking."""

import jax
import numpy as np
import pytest

from mrs_jax import noise_squares_augment, occlusion_augment
from mrs_jax.training import TrainConfig, square_augment

SIDE, SIZE, SIGMA = 8, 3, 7.0
augment = jax.jit(noise_squares_augment, static_argnames=("size", "num_squares"))


def _images(batch):
    return np.random.default_rng(0).uniform(0, 1, (batch, SIDE, SIDE, 3)).astype(
        np.float32
    )


def test_noise_lands_in_the_squares_occlusion_would_fill():
    images = _images(256)
    key = jax.random.key(3)
    out = np.asarray(augment(key, images, SIGMA, SIZE))
    noisy = np.any(out != images, axis=-1)
    # The squares come from the first half of the key as occlusion places them.
    square_key, _ = jax.random.split(key)
    filled = np.asarray(occlusion_augment(square_key, images, SIZE, fill=2.0 / 3))
    np.testing.assert_array_equal(noisy, np.all(filled == np.float32(2 / 3), -1))
    # Two squares mostly, one where they coincide; never more than 2 * SIZE^2.
    sizes = noisy.sum(axis=(1, 2))
    assert sizes.max() <= 2 * SIZE * SIZE and np.mean(sizes > SIZE * SIZE) > 0.8
    # N(0, sigma^2) on every channel, not clipped.
    noise = (out - images)[noisy]
    assert abs(noise.std() - SIGMA) < 0.1 * SIGMA and abs(noise.mean()) < 0.3
    assert noise.max() > 1 and noise.min() < -1


def test_the_config_names_it_and_it_vmaps():
    config = TrainConfig(augmentation="noise_squares", sigma=SIGMA, occlusion_size=SIZE)
    images = _images(4)
    key = jax.random.key(0)
    np.testing.assert_allclose(  # eager against jit: rounding only
        square_augment(key, images, config), augment(key, images, SIGMA, SIZE),
        rtol=1e-6, atol=1e-6,
    )
    keys = jax.random.split(key, 4)
    mapped = jax.vmap(lambda k, x: noise_squares_augment(k, x[None], SIGMA, SIZE))(
        keys, images
    )
    assert mapped.shape == (4, 1, SIDE, SIDE, 3)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(size=SIDE + 1), ValueError, "size must be in"),
        (dict(size=2.5), TypeError, "size must be an int"),
        (dict(num_squares=0), ValueError, "num_squares must be >= 1"),
        (dict(sigma=-1.0), ValueError, "sigma must be >= 0"),
        (dict(images=np.zeros((SIDE, SIDE, 3), np.float32)), ValueError, "B, H, W, C"),
    ],
)
def test_bad_arguments_are_named(change, error, match):
    args = dict(images=_images(2), sigma=SIGMA, size=SIZE, num_squares=2)
    with pytest.raises(error, match=match):
        noise_squares_augment(jax.random.key(0), **{**args, **change})
