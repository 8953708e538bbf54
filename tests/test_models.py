"""Tests for mrs_jax.models: shapes, normalisation inside, as_classifier under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrs_jax.models import Normalize, as_classifier, get_model, model_names


def _images(batch=3, hw=32, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, hw, hw, 3))


@pytest.mark.parametrize(
    "name,hw",
    [("tiny_cnn", 16), ("resnet_tiny", 16), ("wrn_tiny", 16), ("resnet50_tiny", 32)],
)
def test_output_shapes(name, hw):
    model = get_model(name, num_classes=7, seed=0)
    # Jitted training-mode forward: one compile instead of many eager ops.
    logits = nnx.jit(lambda m, x: m(x))(model, _images(2, hw))
    assert logits.shape == (2, 7)
    assert logits.dtype == jnp.float32


def _param_count(name, num_classes):
    abstract = nnx.eval_shape(lambda: get_model(name, num_classes=num_classes, seed=0))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


@pytest.mark.parametrize(
    "name,num_classes,millions",
    # Published sizes: He et al. 2016 Table 6, Zagoruyko & Komodakis 2016, torchvision.
    [
        ("resnet20", 10, 0.27),
        ("resnet56", 10, 0.85),
        ("resnet110", 10, 1.7),
        ("wrn28_10", 10, 36.5),
        ("resnet50", 1000, 25.6),
    ],
)
def test_published_parameter_counts(name, num_classes, millions):
    count = _param_count(name, num_classes) / 1e6
    assert count == pytest.approx(millions, rel=0.03)


def test_normalisation_is_the_first_layer():
    x = _images(2, 16)
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
    normalised = get_model("tiny_cnn", num_classes=4, seed=1, mean=mean, std=std)
    plain = get_model("tiny_cnn", num_classes=4, seed=1, mean=(0, 0, 0), std=(1, 1, 1))
    expected = plain((x - jnp.asarray(mean)) / jnp.asarray(std))
    np.testing.assert_allclose(normalised(x), expected, rtol=1e-4, atol=1e-4)


def test_normalize_validates():
    with pytest.raises(ValueError, match="std"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="images"):
        Normalize((0.5, 0.5, 0.5), (1, 1, 1))(jnp.zeros((2, 4, 4, 1)))


def test_get_model_validates():
    assert "resnet110" in model_names()
    with pytest.raises(ValueError, match="name"):
        get_model("vgg", num_classes=10, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("tiny_cnn", num_classes=1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        get_model("tiny_cnn", num_classes=10)
    with pytest.raises(ValueError, match="depth"):
        get_model("resnet20", num_classes=10, seed=0, depth=21)


def _trained_like(model):
    """Changes the running stats so that eval mode differs from train mode."""
    forward = nnx.jit(lambda m, x: m(x))
    for _ in range(3):
        forward(model, _images(8, 16, seed=5) * 3.0)
    return model


def test_as_classifier_is_eval_mode_and_jittable():
    model = _trained_like(get_model("tiny_cnn", num_classes=5, seed=0))
    classify = as_classifier(model)
    x = _images(4, 16)
    expected = nnx.jit(lambda m, x: m(x))(nnx.view(model, use_running_average=True), x)
    got = jax.jit(lambda f, images: f(images))(classify, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Eval mode: one image's logits do not depend on the rest of the batch.
    np.testing.assert_allclose(classify(x[:1]), got[:1], rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="model"):
        as_classifier(lambda x: x)


def test_as_classifier_weights_are_traced_leaves():
    first = as_classifier(get_model("tiny_cnn", num_classes=3, seed=0))
    second = as_classifier(get_model("tiny_cnn", num_classes=3, seed=1))
    model_arrays = jax.tree.leaves(
        nnx.state(get_model("tiny_cnn", num_classes=3, seed=0))
    )
    assert len(jax.tree.leaves(first)) == len(model_arrays)
    traces = []

    @jax.jit
    def apply(classify, images):
        traces.append(1)
        return classify(images)

    x = _images(2, 16)
    out_first, out_second = apply(first, x), apply(second, x)
    # Same structure, different weights: one trace, different outputs.
    assert len(traces) == 1
    assert not np.allclose(out_first, out_second)
    # The classifier is a snapshot: later training of the model does not change it.
    model = get_model("tiny_cnn", num_classes=3, seed=0)
    snapshot = as_classifier(model)
    before = snapshot(x)
    _trained_like(model)
    np.testing.assert_allclose(snapshot(x), before)


@pytest.mark.parametrize("name", ["tiny_cnn", "small_cnn", "resnet_tiny"])
def test_features_and_head_compose_to_the_classifier(name):
    from mrs_jax.models import features_and_head

    model = get_model(name, num_classes=10, seed=0)
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    features_fn, head_fn = features_and_head(model)
    features = features_fn(images)
    assert features.ndim == 4 and features.shape[0] == 2
    np.testing.assert_allclose(
        head_fn(features), as_classifier(model)(images), rtol=1e-5, atol=1e-5
    )


def test_clamp_clips_the_input_before_normalising():
    # A clamped model sees only [0, 1]: inputs beyond it give the clipped logits.
    x = _images(2, 16)
    noisy = x + 7.0 * jax.random.normal(jax.random.key(3), x.shape)
    for name in ("fast_cnn_tiny", "tiny_cnn", "resnet_tiny"):
        clamped = as_classifier(get_model(name, num_classes=4, seed=2, clamp=True))
        plain = as_classifier(get_model(name, num_classes=4, seed=2))
        np.testing.assert_allclose(
            clamped(noisy), plain(jnp.clip(noisy, 0, 1)), rtol=1e-5, atol=1e-5
        )
        assert not np.allclose(plain(noisy), plain(jnp.clip(noisy, 0, 1)), atol=1e-3)
        # Inside [0, 1] the clamp changes nothing.
        np.testing.assert_allclose(clamped(x), plain(x), rtol=1e-5, atol=1e-5)


def test_fast_cnn_shapes_and_features_split():
    from mrs_jax.models import features_and_head

    model = get_model("fast_cnn_tiny", num_classes=10, seed=0)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    features_fn, head_fn = features_and_head(model)
    features = features_fn(images)
    assert features.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(
        head_fn(features), as_classifier(model)(images), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="widths"):
        get_model("fast_cnn", num_classes=10, seed=0, widths=(8, 8))


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet_tiny"])
def test_get_model_gives_the_weights_of_nnx_rngs(name):
    # get_model counts its keys in Python; they must stay nnx.Rngs' keys.
    from mrs_jax.models._registry import _MODELS

    def with_rngs():
        rngs = nnx.Rngs(params=jax.random.key(5, impl="rbg"))
        return nnx.split(_MODELS[name](3, rngs=rngs))[1]

    expected = jax.tree.leaves(jax.jit(with_rngs)())
    got = jax.tree.leaves(nnx.state(get_model(name, num_classes=3, seed=5)))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
