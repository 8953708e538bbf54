"""Occlusion augmentation: random squares filled with the mask value."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrs_jax import occlusion_augment

SIDE = 8
SIZE = 3
POSITIONS = list(itertools.product(range(SIDE - SIZE + 1), repeat=2))


def _square(top, left):
    square = np.zeros((SIDE, SIDE), bool)
    square[top : top + SIZE, left : left + SIZE] = True
    return square


SQUARES = np.stack([_square(*p) for p in POSITIONS])  # [36, 8, 8]

# As in training, under jit (eager, each random op would dispatch on its own).
augment = jax.jit(occlusion_augment, static_argnames=("size", "num_squares"))


def _images(batch, seed=0):
    # Values in [0, 0.4] so that no original pixel equals the fill.
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.4, (batch, SIDE, SIDE, 3)).astype(np.float32)


def test_fills_a_union_of_two_squares_and_keeps_the_rest():
    images = _images(64)
    out = np.asarray(augment(jax.random.key(0), images, SIZE))
    assert out.shape == images.shape and out.dtype == np.float32
    hidden = np.all(out == np.float32(0.5), axis=-1)
    np.testing.assert_array_equal(out[~hidden], images[~hidden])
    unions = (SQUARES[:, None] | SQUARES[None, :]).reshape(-1, SIDE * SIDE)
    for region in hidden.reshape(len(images), -1):
        assert np.any(np.all(unions == region, axis=1))
    # Two squares, not one: mostly at different places (same place: p = 1/36).
    assert np.mean(hidden.sum(axis=(1, 2)) > SIZE * SIZE) > 0.8
    # Squares land independently per image.
    assert len({region.tobytes() for region in hidden}) > 50


def test_one_square_is_uniform_over_positions():
    draws = 7200  # 200 per position
    blank = jnp.zeros((draws, SIDE, SIDE, 1))
    out = augment(jax.random.key(1), blank, SIZE, num_squares=1, fill=1.0)
    hidden = np.asarray(out[..., 0]).reshape(draws, -1) == 1.0
    matches = hidden[:, None, :] == SQUARES.reshape(1, len(POSITIONS), -1)
    index = np.argmax(np.all(matches, axis=2), axis=1)
    assert np.all(np.all(matches, axis=2).sum(axis=1) == 1)
    counts = np.bincount(index, minlength=len(POSITIONS))
    # Binomial(7200, 1/36): sd ~ 14; 5 sd either side.
    assert np.all(np.abs(counts - 200) < 70), counts


def test_a_constant_per_channel_fill_is_reproducible():
    images = _images(4)
    fill = np.array([0.9, 0.8, 0.7], np.float32)

    @jax.jit
    def per_channel(key, images):
        return occlusion_augment(key, images, SIZE, num_squares=2, fill=fill)

    first = np.asarray(per_channel(jax.random.key(2), images))
    np.testing.assert_array_equal(first, per_channel(jax.random.key(2), images))
    assert not np.array_equal(first, per_channel(jax.random.key(3), images))
    hidden = np.all(first == fill, axis=-1)
    assert np.all(hidden.sum(axis=(1, 2)) >= SIZE * SIZE)
    np.testing.assert_array_equal(first[~hidden], images[~hidden])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(size=0), ValueError, "size"),
        (dict(size=SIDE + 1), ValueError, "size"),
        (dict(size=3.0), TypeError, "size"),
        (dict(num_squares=0), ValueError, "num_squares"),
        (dict(num_squares=True), TypeError, "num_squares"),
        (dict(fill=1.5), ValueError, "fill"),
        (dict(fill=[0.5, 0.5]), ValueError, "fill"),
        (dict(images=np.zeros((SIDE, SIDE, 3), np.float32)), ValueError, "images"),
    ],
)
def test_rejects_bad_input(kwargs, error, name):
    args = dict(images=_images(2), size=SIZE)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        occlusion_augment(jax.random.key(0), **args)
