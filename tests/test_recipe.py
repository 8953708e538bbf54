"""The airbench-class recipe: each training option against a plain oracle."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mrs_jax.models import get_model
from mrs_jax.training import TrainConfig
from mrs_jax.training._evaluate import tta_logits
from mrs_jax.training._optimizer import (
    lookahead_average,
    make_optimizer,
    param_groups,
)

TINY = TrainConfig(
    dataset="synthetic",
    model="airbench_tiny",
    num_classes=3,
    image_shape=(16, 16, 3),
    synthetic_examples=16,
    epochs=2,
    batch_size=4,
)


def _tiny_airbench():
    return get_model("airbench_tiny", num_classes=3, seed=0)


def test_whitening_makes_the_patch_covariance_the_identity():
    rng = np.random.default_rng(0)
    # Strongly correlated channels and neighbours: far from white.
    base = rng.uniform(size=(64, 17, 17, 1)).astype(np.float32)
    images = np.concatenate([base, 0.8 * base + 0.1, 0.5 * base + 0.2], -1)
    images = 0.5 * (images[:, 1:, 1:] + images[:, :-1, :-1])
    images = np.clip(images + 0.05 * rng.normal(size=images.shape), 0, 1)
    model = _tiny_airbench()
    model.init_whitening(images, epsilon=0.0)
    out = model.whiten(model.normalize(jnp.asarray(images)))
    out = np.asarray(out - model.whiten.bias[...]).reshape(-1, out.shape[-1])
    half = out.shape[-1] // 2
    np.testing.assert_allclose(out[:, half:], -out[:, :half], atol=1e-5)
    covariance = out[:, :half].T @ out[:, :half] / len(out)
    np.testing.assert_allclose(covariance, np.eye(half), atol=2e-2)


def test_whitening_refuses_images_of_other_channels():
    with pytest.raises(ValueError, match="channels"):
        _tiny_airbench().init_whitening(np.zeros((2, 8, 8, 1), np.float32))


def test_whitening_keeps_only_the_directions_the_patches_vary_in():
    # The (x, 1 - x) encoding of derandomized smoothing: a 2x2 patch of six
    # channels varies in 4 * 3 + 1 = 13 of its 24 directions. A kept direction
    # without variance would whiten rounding error into a channel.
    from mrs_jax.training._ablation import encode_whole

    rng = np.random.default_rng(0)
    images = np.asarray(encode_whole(jnp.asarray(rng.uniform(size=(16, 9, 9, 3)))))
    encoded = dict(num_classes=3, seed=0, in_channels=6, mean=(0.0,) * 6,
                   std=(1.0,) * 6)  # fmt: skip
    with pytest.raises(ValueError, match="vary in 13 directions.*whiten_directions=13"):
        get_model("airbench_tiny", **encoded).init_whitening(images)
    model = get_model("airbench_tiny", whiten_directions=13, **encoded)
    assert model.whiten.kernel[...].shape == (2, 2, 6, 26)
    assert model.groups[0].conv1.kernel[...].shape[2] == 26
    model.init_whitening(images, epsilon=0.0)
    out = model.whiten(model.normalize(jnp.asarray(images)))
    out = np.asarray(out - model.whiten.bias[...], np.float64).reshape(-1, 26)
    np.testing.assert_allclose(out[:, 13:], -out[:, :13], atol=1e-4)
    # Uncentred, like the whitening: every kept channel has unit power.
    np.testing.assert_allclose(out[:, :13].T @ out[:, :13] / len(out), np.eye(13),
                               atol=2e-2)  # fmt: skip
    for bad, error in ((0, ValueError), (25, ValueError), (True, TypeError)):
        with pytest.raises(error, match="whiten_directions"):
            get_model("airbench_tiny", whiten_directions=bad, **encoded)


def test_convolutions_start_as_identities_on_their_first_channels():
    group = _tiny_airbench().groups[1]
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 8))
    np.testing.assert_allclose(group.conv2(x)[..., :8], x, atol=1e-6)


def test_without_dirac_the_convolutions_keep_their_random_start():
    plain = get_model("airbench_tiny", num_classes=3, seed=0, dirac=False)
    dirac = _tiny_airbench()
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 8))
    assert not np.allclose(plain.groups[1].conv2(x)[..., :8], x, atol=1e-2)
    # Only the identity block differs: the other output channels are the same.
    np.testing.assert_array_equal(
        plain.groups[1].conv2.kernel[..., 8:], dirac.groups[1].conv2.kernel[..., 8:]
    )
    with pytest.raises(TypeError, match="dirac"):
        get_model("airbench_tiny", num_classes=3, seed=0, dirac="no")


def test_a_trained_batchnorm_scale_trains_with_the_biases():
    model = get_model("airbench_tiny", num_classes=3, seed=0, bn_scale=True)
    assert _tiny_airbench().groups[0].norm1.scale is None  # the recipe's
    params = nnx.state(model, nnx.Param)
    groups = param_groups(dataclasses.replace(TINY, bias_lr_scale=64.0), params)
    norm1 = groups["groups"][0]["norm1"]
    assert norm1["scale"].get_value() == norm1["bias"].get_value() == "norm"
    np.testing.assert_array_equal(model.groups[0].norm1.scale[...], 1.0)
    with pytest.raises(TypeError, match="bn_scale"):
        get_model("airbench_tiny", num_classes=3, seed=0, bn_scale=1)


def test_bn_epsilon_bounds_the_gain_of_a_near_constant_channel():
    # A channel whose batch variance is 1e-10: with airbench's 1e-12 BatchNorm
    # scales it by ~1e5; with 1e-5 by ~300 (1 / sqrt(1e-10 + 1e-5)).
    value = 1e-5 * np.sqrt(100)  # one of 100 positions: variance ~1e-10
    x = jnp.zeros((4, 5, 5, 8)).at[0, 0, 0, 0].set(value)
    gains = {}
    for epsilon in (1e-12, 1e-5):
        norm = get_model(
            "airbench_tiny", num_classes=3, seed=0, bn_epsilon=epsilon
        ).groups[1].norm1
        assert norm.epsilon == epsilon
        norm.train()
        gains[epsilon] = float(norm(x)[0, 0, 0, 0]) / value
    assert gains[1e-12] > 1e4 > 1e3 > gains[1e-5] > 1
    for bad in (0.0, -1e-5):
        with pytest.raises(ValueError, match="bn_epsilon"):
            get_model("airbench_tiny", num_classes=3, seed=0, bn_epsilon=bad)


def test_param_groups_freeze_the_whitening_kernel_and_find_norm_biases():
    config = dataclasses.replace(TINY, whiten_examples=8, whiten_bias_epochs=1)
    params = nnx.state(_tiny_airbench(), nnx.Param)
    groups = param_groups(config, params)
    flat = {
        tuple(getattr(k, "key", getattr(k, "name", None)) for k in path): group
        for path, group in jax.tree_util.tree_flatten_with_path(groups)[0]
    }
    assert flat[("whiten", "kernel", "value")] == "frozen"
    assert flat[("whiten", "bias", "value")] == "whiten_bias"
    assert flat[("groups", 0, "norm1", "bias", "value")] == "norm"
    assert flat[("groups", 2, "conv2", "kernel", "value")] == "other"
    assert flat[("head", "kernel", "value")] == "other"
    plain = param_groups(TINY, params)
    assert {g for g in jax.tree.leaves(plain)} == {"other", "norm"}


def test_grouped_optimizer_scales_norm_steps_and_stops_the_whitening_bias():
    config = dataclasses.replace(
        TINY, whiten_examples=8, whiten_bias_epochs=1, bias_lr_scale=8.0,
        momentum=0.0, weight_decay=0.0, schedule="step",
    )
    params = nnx.state(_tiny_airbench(), nnx.Param)
    ones = jax.tree.map(jnp.ones_like, params)
    tx = make_optimizer(config, steps_per_epoch=2)
    state = tx.init(params)
    steps = []
    for _ in range(3):
        update, state = tx.update(ones, state, params)
        steps.append(update)
    rate = config.learning_rate
    np.testing.assert_allclose(steps[0]["whiten"]["kernel"][...], 0.0)
    np.testing.assert_allclose(steps[0]["head"]["kernel"][...], -rate)
    norm = steps[0]["groups"][0]["norm1"]["bias"][...]
    np.testing.assert_allclose(norm, -8 * rate, rtol=1e-6)
    # The whitening bias trains in epoch 1 (steps 0, 1), not after.
    np.testing.assert_allclose(steps[1]["whiten"]["bias"][...], -rate)
    np.testing.assert_allclose(steps[2]["whiten"]["bias"][...], 0.0)


def test_triangle_schedule_rises_to_the_peak_then_falls():
    config = dataclasses.replace(
        TINY, schedule="triangle", triangle=(0.2, 0.25, 0.1), momentum=0.0,
        weight_decay=0.0, epochs=4,
    )
    params = {"w": jnp.zeros(())}
    tx = make_optimizer(config, steps_per_epoch=5)  # 20 steps, peak at 5
    state = tx.init(params)
    rates = []
    for _ in range(20):
        update, state = tx.update({"w": jnp.ones(())}, state, params)
        rates.append(-float(update["w"]) / config.learning_rate)
    np.testing.assert_allclose(rates[0], 0.2, rtol=1e-6)
    np.testing.assert_allclose(rates[5], 1.0, rtol=1e-6)
    np.testing.assert_allclose(rates[-1], 1.0 - 0.9 * 14 / 15, rtol=1e-5)
    assert max(rates) == rates[5]


def test_lookahead_average_equals_a_plain_loop():
    inner = optax.sgd(0.1)
    start, every, decay, power, total = 3, 2, 0.9, 2.0, 9
    tx = lookahead_average(
        inner, start_step=start, every=every, decay=decay, power=power,
        total_steps=total,
    )
    grads = np.random.default_rng(1).normal(size=(total, 3)).astype(np.float32)
    params = jnp.zeros(3)
    state = tx.init(params)
    weights, average = np.zeros(3, np.float32), np.zeros(3, np.float32)
    for t in range(1, total + 1):
        update, state = tx.update(jnp.asarray(grads[t - 1]), state, params)
        params = params + update
        fast = weights - 0.1 * grads[t - 1]
        if t < start:
            weights = average = fast
        elif t % every == 0 or t == total:
            rho = decay**every * (t / total) ** power
            average = rho * average + (1 - rho) * fast
            weights = average
        else:
            weights = fast
        np.testing.assert_allclose(params, weights, rtol=1e-5, atol=1e-6)


def test_a_broken_lookahead_is_caught_by_the_same_loop():
    tx = lookahead_average(
        optax.sgd(0.1), start_step=1, every=1, decay=0.5, power=0.0, total_steps=4
    )
    params = jnp.zeros(1)
    state = tx.init(params)
    update, state = tx.update(jnp.ones(1), state, params)
    # A plain step would be -0.1; pulled halfway to the average (0): -0.05.
    assert not np.allclose(params + update, -0.1)
    np.testing.assert_allclose(params + update, -0.05, rtol=1e-6)


def test_tta_views_average_mirror_and_shifts():
    images = jax.random.uniform(jax.random.key(0), (2, 6, 6, 3))

    def classify(x):  # sensitive to position and orientation
        weights = jnp.arange(x[0].size, dtype=x.dtype).reshape(x.shape[1:])
        return jnp.stack([(x * weights).sum((1, 2, 3)), x.sum((1, 2, 3))], -1)

    np.testing.assert_allclose(tta_logits(classify, images, "none"), classify(images))
    mirror = 0.5 * (classify(images) + classify(images[:, :, ::-1]))
    np.testing.assert_allclose(
        tta_logits(classify, images, "mirror"), mirror, rtol=1e-6
    )
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [images, padded[:, :6, :6], padded[:, 2:8, 2:8]]
    weights = [0.5, 0.25, 0.25]
    expected = sum(
        w * 0.5 * (classify(v) + classify(v[:, :, ::-1]))
        for w, v in zip(weights, views, strict=True)
    )
    np.testing.assert_allclose(
        tta_logits(classify, images, "mirror_translate"), expected, rtol=1e-5
    )


def test_alternating_flips_see_every_image_both_ways_every_two_epochs():
    from mrs_jax.training._train import _flip_parity

    config = dataclasses.replace(TINY, flip_mode="alternating")
    parity = _flip_parity(config, 100)
    assert 30 < parity.sum() < 70
    epoch0, epoch1 = parity ^ False, parity ^ True
    assert np.all(epoch0 != epoch1)
    assert _flip_parity(TINY, 100) is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("schedule", "linear", "schedule"),
        ("flip_mode", "sometimes", "flip_mode"),
        ("crop_pad_mode", "wrap", "crop_pad_mode"),
        ("tta", "all", "tta"),
        ("bias_lr_scale", 0.0, "bias_lr_scale"),
        ("ema_decay", 1.0, "ema_decay"),
        ("triangle", (0.2, 1.5, 0.1), "peak"),
        ("ema_start_epoch", -1, "ema_start_epoch"),
        ("whiten_examples", -5, "whiten_examples"),
    ],
)
def test_recipe_fields_are_checked_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **{field: value})


def test_whitening_needs_a_model_with_a_whitening_layer(tmp_path):
    from mrs_jax.training import train

    config = dataclasses.replace(TINY, model="tiny_cnn", whiten_examples=4)
    with pytest.raises(ValueError, match="whitening layer"):
        train(config, tmp_path / "w", progress=False)


def test_the_smoke_recipe_trains_freezes_the_whitening_kernel_and_loads(tmp_path):
    from mrs_jax.configs.train.cifar10_airbench import get_config
    from mrs_jax.models import load_classifier
    from mrs_jax.training import train

    config = get_config(smoke=True)
    row = train(config, tmp_path / "w", progress=False)
    assert row["epoch"] == 2 and "tta_accuracy" in row
    classify, meta = load_classifier(tmp_path / "w")
    assert meta["model"] == "airbench_tiny"
    images = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    assert classify(images).shape == (3, 10)
    # The whitening kernel trained in no step: it is still the one from data.
    from mrs_jax.models import load_model
    from mrs_jax.training import data_sources
    from mrs_jax.training._train import _init_whitening

    fresh = get_model("airbench_tiny", num_classes=10, seed=config.seed, clamp=True)
    _init_whitening(fresh, config, data_sources(config)[0])
    trained, _ = load_model(tmp_path / "w")
    np.testing.assert_array_equal(
        trained.whiten.kernel[...], fresh.whiten.kernel[...]
    )
    assert not np.array_equal(trained.whiten.bias[...], fresh.whiten.bias[...])
