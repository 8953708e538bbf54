"""Tests for mrs_jax.inpaint: Telea fidelity, harmonic fill exactness, validation."""

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from mrs_jax.localization import _inpaint as inpaint


def _image(seed, height=16, width=18, channels=3):
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, channels)).astype(np.float32)
    return scipy.ndimage.gaussian_filter(noise, (1.5, 1.5, 0)).clip(0, 1)


def _full_telea(x, top_left, size):
    mask = np.zeros(x.shape[:2], np.uint8)
    i, j = top_left
    mask[i : i + size, j : j + size] = 1
    out = cv2.inpaint(inpaint.to_uint8(x), mask, 3, cv2.INPAINT_TELEA)
    return out.reshape(x.shape).astype(np.float32) / 255.0


def test_positions_row_major():
    positions = inpaint.block_positions(7, 9, 3, stride=2)
    assert inpaint.grid_shape(7, 9, 3, 2) == (3, 4)
    np.testing.assert_array_equal(
        positions[:5], [[0, 0], [0, 2], [0, 4], [0, 6], [2, 0]]
    )
    assert positions.shape == (12, 2) and positions.dtype == np.int32


@pytest.mark.parametrize("channels", [1, 3])
def test_sliding_telea_equals_whole_image_cv2(channels):
    x = _image(0, 40, 37, channels)
    size = 9
    variants, positions = inpaint.sliding_inpaint(x, size, stride=3, method="telea")
    assert variants.shape == (len(positions), 40, 37, channels)
    # Crops are bit-identical to inpainting the whole image, including borders.
    for k in range(0, len(positions), 7):
        np.testing.assert_array_equal(
            np.asarray(variants[k]), _full_telea(x, positions[k], size)
        )


def test_harmonic_reproduces_linear_images():
    """Linear functions are discrete-harmonic: an exact oracle for the fill."""
    rows, cols = np.mgrid[0:20, 0:20].astype(np.float32)
    x = np.stack([rows / 40, cols / 40, (rows + cols) / 80 + 0.2], -1)
    block = inpaint.harmonic_block(jnp.asarray(x), jnp.array([6, 9]), 7)
    np.testing.assert_allclose(np.asarray(block), x[6:13, 9:16], atol=1e-5)


def test_harmonic_fill_solves_laplace_with_neumann_borders():
    x = _image(1, 12, 12)
    size = 4
    for top_left in [(0, 0), (8, 3), (4, 8), (5, 5)]:
        i, j = top_left
        variant = np.asarray(
            inpaint.harmonic_variant(jnp.asarray(x), jnp.array(top_left), size)
        )
        np.testing.assert_array_equal(
            np.delete(np.delete(variant, range(i, i + size), 0), range(j, j + size), 1),
            np.delete(np.delete(x, range(i, i + size), 0), range(j, j + size), 1),
        )
        for a in range(i, i + size):
            for b in range(j, j + size):
                nbrs = [
                    variant[p, q]
                    for p, q in ((a - 1, b), (a + 1, b), (a, b - 1), (a, b + 1))
                    if 0 <= p < 12 and 0 <= q < 12  # missing neighbour: zero flux
                ]
                np.testing.assert_allclose(
                    variant[a, b], np.mean(nbrs, axis=0), atol=1e-5
                )


def test_harmonic_close_to_telea_on_smooth_image():
    x = _image(2, 24, 24)
    telea, _ = inpaint.sliding_inpaint(x, 5, stride=4, method="telea")
    harmonic, positions = inpaint.sliding_inpaint(x, 5, stride=4, method="harmonic")
    assert harmonic.shape == telea.shape
    assert float(jnp.min(harmonic)) >= 0 and float(jnp.max(harmonic)) <= 1
    mse = float(jnp.mean((harmonic - telea) ** 2)) * 24 * 24 / 25  # inside block
    assert 10 * np.log10(1 / mse) > 30


def test_block_equal_to_image():
    x = _image(3, 5, 5)
    variants, _ = inpaint.sliding_inpaint(x, 5, method="harmonic")
    np.testing.assert_allclose(np.asarray(variants), 0.5)


def test_validation():
    x = _image(0)
    with pytest.raises(ValueError, match="size"):
        inpaint.sliding_inpaint(x, 17)
    with pytest.raises(ValueError, match="stride"):
        inpaint.sliding_inpaint(x, 3, stride=0)
    with pytest.raises(ValueError, match="method"):
        inpaint.sliding_inpaint(x, 3, method="ns")
    with pytest.raises(ValueError, match="shape"):
        inpaint.sliding_inpaint(x[None], 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inpaint.sliding_inpaint(x + 1, 3)
    with pytest.raises(ValueError, match="NaN"):
        inpaint.sliding_inpaint(np.full_like(x, np.nan), 3)
    with pytest.raises(TypeError, match="float"):
        inpaint.sliding_inpaint(inpaint.to_uint8(x), 3)
    with pytest.raises(TypeError, match="size"):
        inpaint.sliding_inpaint(x, 3.0)
    with pytest.raises(ValueError, match="channels"):
        inpaint.sliding_inpaint(_image(0, 8, 8, 2), 3, method="telea")
