"""The counting program's own chunk cap: faster on CPU, the same counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrs_jax
from mrs_jax import counting, sharding


def _linear_classifier(traced_batches):
    weights = np.random.default_rng(0).normal(size=(8 * 8 * 3, 5)).astype(np.float32)

    def classify(images):
        traced_batches.append(images.shape[0])  # at trace time only
        return images.reshape(images.shape[0], -1) @ jnp.asarray(weights)

    return classify


@pytest.fixture
def image():
    return np.random.default_rng(1).uniform(size=(8, 8, 3)).astype(np.float32)


def test_capped_chunk_gives_the_same_counts(image, monkeypatch):
    mask = mrs_jax.square_mask(image.shape, 2, 2, 4)
    args = dict(key=jax.random.key(3), num=1000, num_classes=5, batch_size=400)
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", None)
    uncapped_batches = []
    uncapped = mrs_jax.sample_counts(
        _linear_classifier(uncapped_batches), image, mask, 0.7, **args
    )
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", 8)
    capped_batches = []
    capped = mrs_jax.sample_counts(
        _linear_classifier(capped_batches), image, mask, 0.7, **args
    )
    devices = len(jax.devices())
    assert uncapped_batches == [400] and capped_batches == [8 * devices]
    np.testing.assert_array_equal(capped, uncapped)
    assert capped.sum() == 1000 and (capped > 0).sum() > 1  # not degenerate


def test_device_chunk_caps_per_device_and_rounds_to_devices(monkeypatch):
    mesh = sharding.sample_mesh()
    devices = mesh.devices.size
    # By default the chunk asked for is the chunk run (rounded to the devices).
    assert counting.device_chunk(1000 * devices, mesh) == 1000 * devices
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", 16)
    assert counting.device_chunk(1000, mesh) == 16 * devices
    assert counting.device_chunk(5, mesh) == sharding.round_up_to_devices(5, mesh)
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", None)
    assert counting.device_chunk(1000, mesh) == 1000
