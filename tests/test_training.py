"""Tests for noise, training, checkpoints and ``python -m train``."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrs_jax.models import load_classifier
from mrs_jax.training import (
    TrainConfig,
    masked_noise_augment,
    random_square_masks,
    train,
)
from train.__main__ import run as train_main

REPO = Path(__file__).resolve().parents[1]

TINY = TrainConfig(
    dataset="synthetic",
    model="tiny_cnn",
    num_classes=3,
    image_shape=(12, 12, 3),
    synthetic_examples=64,
    epochs=3,
    batch_size=16,
    learning_rate=0.05,
    sigma=0.2,
    w_min=2,
    w_max=5,
    eval_batch_size=16,
)


def _square_side(mask):
    rows, cols = np.nonzero(mask)
    side = rows.max() - rows.min() + 1
    assert cols.max() - cols.min() + 1 == side and mask.sum() == side * side
    return side


def test_random_square_masks_widths_and_positions():
    masks = np.asarray(random_square_masks(jax.random.key(0), 400, (12, 9), 2, 5))
    assert masks.shape == (400, 12, 9) and masks.dtype == bool
    sides = [_square_side(m) for m in masks]
    assert set(sides) == {2, 3, 4, 5}
    # Every corner position, including the last row and column, is reachable.
    assert masks[:, -1, :].any() and masks[:, :, -1].any() and masks[:, 0, 0].any()
    with pytest.raises(ValueError, match="w_max"):
        random_square_masks(jax.random.key(0), 2, (12, 9), 2, 10)
    with pytest.raises(ValueError, match="w_min"):
        random_square_masks(jax.random.key(0), 2, (12, 9), 0, 3)


def test_noise_only_inside_one_square_and_unclipped():
    images = jnp.full((50, 10, 10, 3), 0.5)
    noisy = jax.jit(lambda k, x: masked_noise_augment(k, x, 2.0, 3, 6))(
        jax.random.key(1), images
    )
    changed = np.asarray(noisy != images)
    for per_image in changed:
        # All channels of a noisy pixel are noisy; the noisy pixels form a square.
        assert (per_image.all(-1) == per_image.any(-1)).all()
        assert 3 <= _square_side(per_image.any(-1)) <= 6
    assert noisy.min() < 0.0 and noisy.max() > 1.0  # not clipped
    inside = np.asarray(noisy - images)[changed]
    assert inside.std() == pytest.approx(2.0, rel=0.1)
    full = masked_noise_augment(jax.random.key(2), images, 1.0, 3, 6, full_image=True)
    assert bool((full != images).all())
    with pytest.raises(ValueError, match="images"):
        masked_noise_augment(jax.random.key(0), images[0], 1.0, 3, 6)
    with pytest.raises(ValueError, match="sigma"):
        masked_noise_augment(jax.random.key(0), images, -1.0, 3, 6)


def test_tiny_run_decreases_loss_and_loads(tmp_path):
    row = train(TINY, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and row == rows[-1]
    assert rows[-1]["loss"] < rows[0]["loss"]
    classify, meta = load_classifier(tmp_path)
    assert meta["model"] == "tiny_cnn" and meta["epoch"] == 3
    assert meta["image_shape"] == [12, 12, 3] and meta["sigma"] == 0.2
    from mrs_jax.data import load_dataset

    x, y = load_dataset(
        "synthetic", "test", num_examples=16, image_shape=(12, 12, 3), num_classes=3
    )
    logits = jax.jit(lambda f, images: f(images))(classify, x)
    accuracy = float(np.mean(np.argmax(logits, -1) == y))
    assert logits.shape == (16, 3)
    assert accuracy == pytest.approx(row["clean_accuracy"])
    # Loading one epoch's checkpoint by its folder.
    _, meta_2 = load_classifier(tmp_path / "checkpoints" / "3")
    assert meta_2["epoch"] == 3
    # An existing run is not silently overwritten.
    with pytest.raises(ValueError, match="resume"):
        train(TINY, tmp_path, progress=False)
    # Resuming with other noise settings would mix two trainings: refused.
    with pytest.raises(ValueError, match="different.*sigma"):
        train(
            dataclasses.replace(TINY, sigma=0.4), tmp_path, resume=True, progress=False
        )
    # Warm start from it: fresh optimiser and epochs, but a head start in loss.
    warm = train(TINY, tmp_path / "warm", init_from=tmp_path, progress=False)
    warm_rows = [json.loads(x) for x in (tmp_path / "warm" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in warm_rows] == [1, 2, 3] and warm == warm_rows[-1]
    assert warm_rows[0]["loss"] < rows[0]["loss"]


def test_nan_loss_raises(tmp_path):
    # A diverging learning rate (an infinite sigma is refused by TrainConfig).
    config = dataclasses.replace(TINY, epochs=1, schedule="step", learning_rate=1e30)
    with pytest.raises(FloatingPointError, match="loss"):
        train(config, tmp_path, progress=False)


def test_batch_must_divide_by_devices(tmp_path):
    assert jax.device_count() == 4
    with pytest.raises(ValueError, match="divisible"):
        train(dataclasses.replace(TINY, batch_size=6), tmp_path, progress=False)


@pytest.mark.parametrize("name", ["cifar10", "imagenet"])
def test_smoke_configs_run_end_to_end(name, tmp_path):
    config = f"train/configs/{name}.py"
    train_main(["--config", str(REPO / config), "--workdir", str(tmp_path), "--smoke"])
    classify, meta = load_classifier(tmp_path)
    images = jnp.zeros((2, *meta["image_shape"]))
    assert classify(images).shape == (2, meta["num_classes"])


_RESUME_CONFIG = """
import dataclasses
from mrs_jax.training import TrainConfig

def get_config(smoke=False):
    return TrainConfig(
        dataset="synthetic", model="tiny_cnn", num_classes=3,
        image_shape=(8, 8, 3), synthetic_examples=64, epochs=4,
        batch_size=8, learning_rate=0.05, sigma=0.2, w_min=2, w_max=4,
        max_eval_examples=8, eval_batch_size=8, keep_checkpoints=2,
    )
"""


def test_kill_and_resume_runs_every_epoch_once(tmp_path):
    config = tmp_path / "resume_config.py"
    config.write_text(_RESUME_CONFIG)
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "train", "--config", str(config)]
    command += ["--workdir", str(workdir), "--no_progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = workdir / "checkpoints" / "1"
    deadline = time.monotonic() + 240
    while not first.is_dir() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    before = [json.loads(x) for x in lines if x.endswith("}")]
    assert 1 <= len(before) < 4
    done = subprocess.run(
        command + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["epoch"] for r in rows] == list(range(1, 5))
    # Epochs finished before the kill were kept, not re-run.
    assert rows[0] == before[0]
    _, meta = load_classifier(workdir)
    assert meta["epoch"] == 4


def test_sharded_step_matches_single_device():
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from mrs_jax.models import get_model
    from mrs_jax.training import make_optimizer, make_train_step

    model = get_model("tiny_cnn", num_classes=3, seed=0)
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    step = make_train_step(graphdef, TINY, 4)
    opt_state = make_optimizer(TINY, 4).init(params)
    images = jax.random.uniform(jax.random.key(0), (16, 12, 12, 3))
    labels = jnp.arange(16) % 3
    key = jax.random.key(1)
    copy = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731 (donated inputs)
    single = step(
        copy({"params": params, "batch_stats": batch_stats}),
        copy(opt_state),
        rest,
        images,
        labels,
        key,
    )
    mesh = jax.make_mesh((4,), ("data",), (jax.sharding.AxisType.Auto,))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put(
        copy({"params": params, "batch_stats": batch_stats}), replicated
    )
    parallel = step(
        state,
        jax.device_put(copy(opt_state), replicated),
        rest,
        jax.device_put(images, sharded),
        jax.device_put(labels, sharded),
        key,
    )
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(parallel), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_random_flip_crop_shifts_or_mirrors():
    from mrs_jax.training import random_flip_crop

    image = jax.random.uniform(jax.random.key(0), (10, 10, 3))
    outs = jax.vmap(random_flip_crop, in_axes=(0, None))(
        jax.random.split(jax.random.key(1), 64), image
    )
    assert outs.shape == (64, 10, 10, 3)
    # The central 2x2 pixels always come from the image (shift <= 4), maybe mirrored.
    centre = np.asarray(image)
    for out in np.asarray(outs):
        found = any(
            np.allclose(out[4:6, 4:6], src[4 + dy : 6 + dy, 4 + dx : 6 + dx])
            for src in (centre, centre[:, ::-1])
            for dy in range(-4, 5)
            for dx in range(-4, 5)
        )
        assert found


def test_capped_evaluation_uses_a_random_subset_not_the_first_examples():
    # Folder data sets are sorted by class: the first examples are all class 0.
    from mrs_jax.data import ArraySource
    from mrs_jax.training import evaluate

    images = np.zeros((100, 8, 8, 3), np.float32)
    labels = np.repeat(np.arange(2, dtype=np.int32), 50)
    source = ArraySource(images, labels, 2)
    always_zero = jax.tree_util.Partial(
        lambda x: jnp.stack([jnp.ones(x.shape[0]), jnp.zeros(x.shape[0])], -1)
    )
    config = TrainConfig(
        dataset="synthetic", image_shape=(8, 8, 3), num_classes=2, w_min=2, w_max=3,
        max_eval_examples=40, eval_batch_size=8,
    )  # fmt: skip
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    scores = evaluate(always_zero, source, config, mesh, jax.random.key(0))
    # The first 40 would give 1.0; a random 40 of 50/50 classes lands near 0.5.
    assert 0.25 <= scores["clean_accuracy"] <= 0.75
    full = dataclasses.replace(config, max_eval_examples=None)
    assert evaluate(always_zero, source, full, mesh, jax.random.key(0))[
        "clean_accuracy"
    ] == pytest.approx(0.5)


def test_label_smoothing_mixes_cross_entropy_with_the_uniform_target():
    # L(s) = (1 - s) * CE + s * mean_k(-log p_k): linear in s, and not flat.
    from flax import nnx

    from mrs_jax.models import get_model
    from mrs_jax.training import make_optimizer, make_train_step

    model = get_model("tiny_cnn", num_classes=3, seed=0)
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    images = jax.random.uniform(jax.random.key(0), (8, 12, 12, 3))
    labels = jnp.arange(8) % 3
    losses = []
    for smoothing in (0.0, 0.4, 0.8):
        config = dataclasses.replace(TINY, label_smoothing=smoothing)
        step = make_train_step(graphdef, config, 4)
        state = jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})
        opt_state = make_optimizer(config, 4).init(state["params"])
        _, _, loss, _ = step(state, opt_state, rest, images, labels, jax.random.key(1))
        losses.append(float(loss))
    assert abs(losses[2] - losses[0]) > 1e-3
    assert losses[1] == pytest.approx((losses[0] + losses[2]) / 2, rel=1e-5)
