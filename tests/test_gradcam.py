"""Tests for mrs_jax.gradcam."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrs_jax.localization import best_window, gradcam, input_gradient_saliency


def _identity(images):
    return images


def _spatial_linear_head(weights, features):
    # logits[b, c] = sum_{i,j,k} A[b, i, j, k] W[k, c]: d logit_c / d A_k = W[k, c].
    return jnp.einsum("bhwk,kc->bc", features, weights)


def _pool4(images):
    batch, height, width, channels = images.shape
    blocks = images.reshape(batch, height // 4, 4, width // 4, 4, channels)
    return blocks.mean(axis=(2, 4))


def test_gradcam_linear_head_known_answer():
    x = jax.random.uniform(jax.random.key(0), (6, 5, 3))
    weights = jnp.array([[1.0, -1.0], [2.0, 0.5], [-3.0, 1.0]])
    head = jax.tree_util.Partial(_spatial_linear_head, weights)
    for class_index in (0, 1):
        cam = gradcam(_identity, head, x, class_index)
        expected = np.maximum(np.asarray(x) @ np.asarray(weights[:, class_index]), 0)
        assert cam.shape == (6, 5)
        np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)
    assert np.any(np.asarray(gradcam(_identity, head, x, 0)) == 0)


def test_gradcam_upsamples_and_finds_bright_block():
    # Features pooled 4x; channel 0 drives class 1, so the bright block lights up.
    x = np.zeros((2, 16, 16, 1), np.float32)
    x[0, 8:12, 4:8] = 1.0
    x[1, 0:4, 12:16] = 1.0
    head = jax.tree_util.Partial(_spatial_linear_head, jnp.array([[-1.0, 1.0]]))
    cams = gradcam(_pool4, head, x, np.array([1, 1]))
    assert cams.shape == (2, 16, 16)
    assert float(cams.min()) >= 0.0
    assert best_window(cams[0], 4) == (8, 4)
    assert best_window(cams[1], 4) == (0, 12)
    # Class 0 weighs the only feature negatively: ReLU leaves nothing.
    np.testing.assert_array_equal(gradcam(_pool4, head, x[0], 0), 0.0)


def test_input_gradient_saliency_linear():
    weights = jax.random.normal(jax.random.key(1), (4 * 4 * 2, 3))

    def classify(w, images):
        return images.reshape(images.shape[0], -1) @ w

    saliency = input_gradient_saliency(
        jax.tree_util.Partial(classify, weights), np.full((4, 4, 2), 0.5), 2
    )
    expected = np.abs(np.asarray(weights[:, 2]).reshape(4, 4, 2)).sum(-1)
    np.testing.assert_allclose(saliency, expected, rtol=1e-5)


def _brute_force_best_window(heat, size):
    best, where = -np.inf, None
    for top in range(heat.shape[0] - size + 1):
        for left in range(heat.shape[1] - size + 1):
            total = heat[top : top + size, left : left + size].astype(np.float64).sum()
            if total > best:  # strict: ties keep the first in row-major order
                best, where = total, (top, left)
    return where


@pytest.mark.parametrize("shape, size", [((7, 9), 3), ((5, 5), 5), ((6, 4), 1)])
def test_best_window_matches_brute_force(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    for _ in range(5):
        heat = rng.random(shape).astype(np.float32)
        assert best_window(heat, size) == _brute_force_best_window(heat, size)


def test_best_window_ties_go_to_first_row_major():
    assert best_window(np.ones((6, 6)), 2) == (0, 0)
    heat = np.zeros((6, 6))
    heat[4, 1] = heat[1, 4] = 1.0  # both windows hold one hot pixel
    assert best_window(heat, 1) == (1, 4)


@pytest.mark.parametrize(
    "heat, size, error",
    [
        (np.ones((3, 3, 1)), 2, ValueError),
        (np.ones((3, 3)), 4, ValueError),
        (np.ones((3, 3)), 0, ValueError),
        (np.ones((3, 3)), 2.0, TypeError),
        (np.full((3, 3), np.nan), 2, ValueError),
    ],
)
def test_best_window_bad_arguments(heat, size, error):
    with pytest.raises(error):
        best_window(heat, size)


def test_gradcam_bad_arguments():
    head = jax.tree_util.Partial(_spatial_linear_head, jnp.ones((1, 2)))
    x = np.zeros((4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="class_index"):
        gradcam(_identity, head, x, 2)
    with pytest.raises(ValueError, match="x must be"):
        gradcam(_identity, head, x[..., 0], 0)
    with pytest.raises(TypeError, match="features_fn"):
        gradcam(None, head, x, 0)
    with pytest.raises(ValueError, match="features_fn"):
        gradcam(lambda im: im[..., 0], head, x, 0)
