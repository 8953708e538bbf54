"""Training with occlusion masks: a fair base model for PatchCleanser.

``TrainConfig(augmentation="occlusion")`` trains on images with random squares
filled with the mask value and no Gaussian noise; the default ``masked_noise``
keeps its random draws; the fields are checked by name; the run's occluded
accuracy is evaluated; a resume with another occlusion setting is refused.
"""

import dataclasses
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mrs_jax import patchcleanser_masks
from mrs_jax.core import configfile
from mrs_jax.data import ArraySource
from mrs_jax.models import _checkpoint as ckpt, get_model
from mrs_jax.training import (
    TrainConfig,
    augment,
    data_sources,
    evaluate,
    make_optimizer,
    make_train_step,
    masked_noise_augment,
    occlusion_augment,
    random_flip_crop,
    train,
)
from train.__main__ import run as train_main

REPO = Path(__file__).resolve().parents[1]
SIDE, SIZE = 8, 3

OCCLUSION = TrainConfig(
    dataset="synthetic",
    model="tiny_cnn",
    num_classes=3,
    image_shape=(SIDE, SIDE, 3),
    synthetic_examples=32,
    epochs=1,
    batch_size=8,
    learning_rate=0.05,
    augmentation="occlusion",
    occlusion_size=SIZE,
    sigma=0.2,
    w_min=2,
    w_max=4,
    max_steps_per_epoch=1,
    max_eval_examples=8,
    eval_batch_size=8,
)
NOISE = dataclasses.replace(OCCLUSION, augmentation="masked_noise")

# Every pair of SIZE x SIZE squares in a SIDE x SIDE image, as their union.
_SQUARES = []
for top, left in itertools.product(range(SIDE - SIZE + 1), repeat=2):
    square = np.zeros((SIDE, SIDE), bool)
    square[top : top + SIZE, left : left + SIZE] = True
    _SQUARES.append(square)
UNIONS = {
    (a | b).tobytes() for a, b in itertools.combinations_with_replacement(_SQUARES, 2)
}

jit_augment = jax.jit(augment, static_argnames="config")


def _images(batch, seed=0):
    # Values in [0, 0.4]: no original pixel equals the fill.
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.4, (batch, SIDE, SIDE, 3)).astype(np.float32)


# --- the augmentation ---------------------------------------------------------


def test_occlusion_augment_is_two_filled_squares_and_no_noise():
    images = _images(64)
    out = np.asarray(jit_augment(jax.random.key(0), images, OCCLUSION))
    hidden = np.all(out == np.float32(0.5), axis=-1)
    # No Gaussian noise: every pixel outside the squares is the input's.
    np.testing.assert_array_equal(out[~hidden], images[~hidden])
    for per_image in hidden:
        assert per_image.tobytes() in UNIONS  # one or two 3x3 squares, no more
    counts = hidden.sum(axis=(1, 2))
    assert counts.min() >= SIZE * SIZE and counts.max() == 2 * SIZE * SIZE
    # A per-channel fill is put on each channel.
    fill = (0.5, 0.75, 1.0)
    coloured = dataclasses.replace(OCCLUSION, occlusion_fill=fill)
    out = np.asarray(jit_augment(jax.random.key(0), images, coloured))
    hidden_rgb = np.all(out == np.asarray(fill, np.float32), axis=-1)
    np.testing.assert_array_equal(hidden_rgb, hidden)  # same key: same squares
    # Three squares per image when asked.
    three = dataclasses.replace(OCCLUSION, occlusion_squares=3)
    out = np.asarray(jit_augment(jax.random.key(0), images, three))
    assert np.all(out == np.float32(0.5), axis=-1).sum(axis=(1, 2)).max() == 27


def test_occlusion_follows_flips_and_crops_with_the_same_keys():
    images = _images(16, seed=1)
    config = dataclasses.replace(OCCLUSION, flip_crop=True)
    key = jax.random.key(3)
    crop_key, square_key = jax.random.split(key)
    cropped = jax.vmap(random_flip_crop)(jax.random.split(crop_key, 16), images)
    expected = jax.jit(occlusion_augment, static_argnums=(2, 3))(
        square_key, cropped, SIZE, 2, 0.5
    )
    out = np.asarray(jit_augment(key, images, config))
    np.testing.assert_array_equal(out, np.asarray(expected))
    assert not np.array_equal(out, np.asarray(jit_augment(key, images, OCCLUSION)))


def test_masked_noise_default_draws_are_unchanged():
    assert TrainConfig().augmentation == "masked_noise"
    images = _images(16, seed=2)
    key = jax.random.key(5)
    # The key use of the code before occlusion existed: split, the second half noises.
    _, noise_key = jax.random.split(key)
    expected = jax.jit(masked_noise_augment, static_argnums=(2, 3, 4))(
        noise_key, images, 0.2, 2, 4
    )
    np.testing.assert_array_equal(
        np.asarray(jit_augment(key, images, NOISE)), np.asarray(expected)
    )


def test_the_train_step_sees_the_occluded_images():
    model = get_model("tiny_cnn", num_classes=3, seed=0)
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    images, labels = _images(8, seed=3), np.arange(8, dtype=np.int32) % 3
    key = jax.random.key(7)

    def loss_on(x):
        # A fresh model in training mode, as the step's forward pass.
        fresh = nnx.merge(graphdef, params, batch_stats, rest)
        losses = optax.softmax_cross_entropy_with_integer_labels(fresh(x), labels)
        return float(losses.mean())

    occluded = jit_augment(key, images, OCCLUSION)
    losses = {}
    for name, config in (("occlusion", OCCLUSION), ("masked_noise", NOISE)):
        step = make_train_step(graphdef, config, 1)
        # Copies: the step donates its state and optimiser state.
        state = jax.tree.map(jnp.copy, {"params": params, "batch_stats": batch_stats})
        opt_state = make_optimizer(config, 1).init(state["params"])
        _, _, loss, _ = step(state, opt_state, rest, images, labels, key)
        losses[name] = float(loss)
    assert losses["occlusion"] == pytest.approx(loss_on(occluded), rel=1e-5)
    assert losses["occlusion"] != pytest.approx(loss_on(images), rel=1e-3)
    assert losses["masked_noise"] != pytest.approx(losses["occlusion"], rel=1e-3)


def test_evaluate_reports_occluded_accuracy():
    # A classifier that says 1 exactly when some pixel is the fill on every channel.
    def detects_fill(x):
        hit = jnp.any(jnp.all(x == 0.5, axis=-1), axis=(1, 2))
        return jnp.stack([~hit, hit], axis=-1).astype(jnp.float32)

    classify = jax.tree_util.Partial(detects_fill)
    source = ArraySource(_images(16, seed=4), np.ones(16, np.int32), 2)
    auto = (jax.sharding.AxisType.Auto,)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), auto)
    occluded = evaluate(classify, source, OCCLUSION, mesh, jax.random.key(0))
    assert occluded == {"clean_accuracy": 0.0, "noisy_accuracy": 1.0}
    noisy = evaluate(classify, source, NOISE, mesh, jax.random.key(0))
    assert noisy == {"clean_accuracy": 0.0, "noisy_accuracy": 0.0}


# --- the fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("augmentation", "cutout", ValueError),
        ("augmentation", 3, TypeError),
        ("occlusion_size", 0, ValueError),
        ("occlusion_size", 2.5, TypeError),
        ("occlusion_squares", 0, ValueError),
        ("occlusion_squares", True, TypeError),
        ("occlusion_fill", 1.5, ValueError),
        ("occlusion_fill", -0.1, ValueError),
        ("occlusion_fill", float("nan"), ValueError),
        ("occlusion_fill", "grey", TypeError),
        ("occlusion_fill", (), ValueError),
        ("occlusion_fill", (0.5, 2.0, 0.5), ValueError),
        ("occlusion_fill", (0.5, None, 0.5), TypeError),
    ],
)
def test_occlusion_field_out_of_range_is_named(field, value, error):
    with pytest.raises(error, match=field):
        dataclasses.replace(OCCLUSION, **{field: value})


def test_occlusion_fields_are_normalised_and_contradictions_refused():
    listed = dataclasses.replace(OCCLUSION, occlusion_fill=[0, 0.5, 1])
    assert listed.occlusion_fill == (0.0, 0.5, 1.0) and hash(listed)
    assert dataclasses.replace(OCCLUSION, occlusion_fill=1).occlusion_fill == 1.0
    with pytest.raises(ValueError, match="full_image_noise"):
        dataclasses.replace(OCCLUSION, full_image_noise=True)
    assert dataclasses.replace(NOISE, full_image_noise=True).full_image_noise


def test_occlusion_that_does_not_fit_the_data_is_refused_before_writing(tmp_path):
    big = dataclasses.replace(OCCLUSION, occlusion_size=SIDE + 1)
    with pytest.raises(ValueError, match=r"occlusion_size=9 exceeds the 8x8"):
        data_sources(big)
    two_channels = dataclasses.replace(OCCLUSION, occlusion_fill=(0.5, 0.5))
    with pytest.raises(ValueError, match="occlusion_fill has 2 values"):
        train(two_channels, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # masked_noise ignores the occlusion fields.
    data_sources(dataclasses.replace(big, augmentation="masked_noise"))


# --- the config file, a run and its resume ------------------------------------------


def test_cifar10_cpu_occlusion_config_is_cifar10_cpu_with_patchcleanser_masks():
    configs = REPO / "train" / "configs"
    occlusion = configfile.load(
        configs / "cifar10_cpu_occlusion.py", False, TrainConfig
    )
    base = configfile.load(configs / "cifar10_cpu.py", False, TrainConfig)
    assert occlusion.augmentation == "occlusion"
    changes = dict(augmentation="occlusion", occlusion_size=9, occlusion_squares=2)
    assert occlusion == dataclasses.replace(base, occlusion_fill=0.5, **changes)
    # The square side is the width of PatchCleanser's CIFAR-10 masks (patch 5, k 6).
    masks = patchcleanser_masks((32, 32), 5, 6)
    widths = {int(m.any(axis=0).sum()) for m in masks} | {
        int(m.any(axis=1).sum()) for m in masks
    }
    assert occlusion.occlusion_size in widths and min(widths) == 9


def test_smoke_config_trains_and_records_the_occlusion(tmp_path):
    config = str(REPO / "train" / "configs" / "cifar10_cpu_occlusion.py")
    assert train_main(["--config", config, "--workdir", str(tmp_path), "--smoke"]) == 0
    meta = ckpt.read_model_meta(tmp_path)
    assert meta["config"]["augmentation"] == "occlusion"
    assert meta["config"]["occlusion_size"] == 9
    rows = [json.loads(line) for line in (tmp_path / ckpt.METRICS_JSONL).open()]
    assert [r["epoch"] for r in rows] == [1]
    assert 0.0 <= rows[0]["noisy_accuracy"] <= 1.0


def test_resume_with_another_occlusion_setting_is_refused(tmp_path):
    train(OCCLUSION, tmp_path, progress=False)
    meta = ckpt.read_model_meta(tmp_path)
    assert meta["config"] == ckpt.json_normal(dataclasses.asdict(OCCLUSION))
    before = (tmp_path / ckpt.METRICS_JSONL).read_text()
    for change, named in [
        ({"occlusion_size": 4}, "occlusion_size: 3 -> 4"),
        ({"occlusion_squares": 1}, "occlusion_squares: 2 -> 1"),
        ({"occlusion_fill": 0.0}, "occlusion_fill: 0.5 -> 0.0"),
        ({"augmentation": "masked_noise"}, "augmentation: 'occlusion' -> 'masked_"),
    ]:
        with pytest.raises(ValueError, match=named):
            train(dataclasses.replace(OCCLUSION, **change), tmp_path, resume=True)
    assert (tmp_path / ckpt.METRICS_JSONL).read_text() == before
    # The same config resumes (nothing left to train: the last row comes back).
    row = train(OCCLUSION, tmp_path, resume=True, progress=False)
    assert row == json.loads(before.splitlines()[-1])
