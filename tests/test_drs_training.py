"""Training a derandomized smoothing base classifier: ``augmentation="ablation"``.

The augmentation is the certificate's own ablation (one band, encoded); a model
trained on it loads and certifies through ``mrs-certify --mode drs``.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certify.__main__ import main as certify_main
from mrs_jax import derandomized_smoothing, load_classifier
from mrs_jax.core import configfile
from mrs_jax.training import (
    TrainConfig,
    ablate,
    ablation_augment,
    encode_whole,
    square_augment,
    train,
)

SMOKE = configfile.load(
    configfile.shipped("cifar10_airbench_drs", "train"), True, TrainConfig
)


@pytest.mark.parametrize("mode, kept", [("column", 4 * 8), ("block", 4 * 4)])
def test_each_image_keeps_one_band_encoded(mode, kept):
    images = jax.random.uniform(jax.random.key(0), (16, 8, 8, 3))
    out = ablation_augment(jax.random.key(1), images, 4, mode)
    assert out.shape == (16, 8, 8, 6)
    pair_sums = np.asarray(out[..., :3] + out[..., 3:])
    keep = np.isclose(pair_sums, 1.0).all(-1)
    assert np.isclose(pair_sums[~keep], 0.0).all()  # ablated pixels are (0, 0)
    assert (keep.sum((1, 2)) == kept).all()
    np.testing.assert_allclose(np.asarray(out[..., :3])[keep], np.asarray(images)[keep])
    # Each is the certificate's ablation at some position, positions vary.
    positions = []
    for x, got in zip(images, out, strict=True):
        count = 8 if mode == "column" else 64
        same = [p for p in range(count)
                if np.allclose(ablate(x, p, 4, mode), got)]  # fmt: skip
        assert len(same) == 1
        positions += same
    assert len(set(positions)) > 3


def test_the_config_routes_the_augmentation_and_checks_its_fields():
    images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    assert square_augment(jax.random.key(1), images, SMOKE).shape == (2, 32, 32, 6)
    whole = encode_whole(images)
    np.testing.assert_allclose(whole[..., :3] + whole[..., 3:], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="ablation_mode must be one of"):
        dataclasses.replace(SMOKE, ablation_mode="rows")
    with pytest.raises(ValueError, match="ablation_band"):
        dataclasses.replace(SMOKE, ablation_band=0)


def test_a_trained_ablation_model_certifies_with_mode_drs(tmp_path, capsys):
    workdir = tmp_path / "drs"
    row = train(SMOKE, workdir, progress=False)
    assert 0.0 <= row["noisy_accuracy"] <= 1.0 and 0.0 <= row["clean_accuracy"] <= 1.0
    classify, meta = load_classifier(workdir)
    assert meta["model_kwargs"]["in_channels"] == 6
    x = np.asarray(jax.random.uniform(jax.random.key(2), (2, 32, 32, 3)))
    results = derandomized_smoothing(classify, x, 5, 4)
    assert all(sum(r.votes) == 32 for r in results)
    out = tmp_path / "run"
    args = ["--config", "cifar10_cpu_drs:smoke", "--checkpoint", str(workdir),
            "--out", str(out), "--num_images", "2", "--no_progress"]  # fmt: skip
    assert certify_main(args) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(sum(r["votes"]) == 32 for r in rows)
    assert all(isinstance(r["certified"], bool) for r in rows)
    # Evaluated on encoded whole images: the logits of a clean batch are finite.
    assert jnp.isfinite(classify(encode_whole(jnp.asarray(x)))).all()
