"""Tests for mrs_jax.data: digits split, CIFAR folder reader, synthetic, tfds."""

import pickle

import numpy as np
import pytest

from mrs_jax.data import (
    dataset_source,
    load_dataset,
    read_cifar10_folder,
    resize_center_crop,
)


def test_digits_split_is_fixed_and_documented():
    from sklearn.datasets import load_digits

    train_x, train_y = load_dataset("digits", "train")
    test_x, test_y = load_dataset("digits", "test")
    assert train_x.shape == (1497, 32, 32, 3) and test_x.shape == (300, 32, 32, 3)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    assert train_x.min() >= 0.0 and train_x.max() <= 1.0
    assert train_x.max() == 1.0
    # The documented rule: default_rng(0) permutation, first 300 are the test split.
    target = load_digits().target
    order = np.random.default_rng(0).permutation(len(target))
    np.testing.assert_array_equal(test_y, target[order[:300]])
    np.testing.assert_array_equal(train_y, target[order[300:]])
    # Grey images: all channels equal; a second load gives the same arrays.
    np.testing.assert_array_equal(train_x[..., 0], train_x[..., 2])
    np.testing.assert_array_equal(load_dataset("digits", "test")[0], test_x)
    # Upsampling keeps the 8x8 image: averaging 4x4 blocks is close to it.
    original = load_digits().images[order[0]] / 16.0
    blocks = test_x[0, :, :, 0].reshape(8, 4, 8, 4).mean(axis=(1, 3))
    assert np.abs(blocks - original).mean() < 0.1


def _write_cifar(folder, per_batch=4):
    rng = np.random.default_rng(0)
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
        expected[name] = (data, labels)
    return expected


def test_cifar10_folder_reader(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = _write_cifar(folder)
    images, labels = load_dataset("cifar10", "train", data_dir=str(tmp_path))
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.float32
    assert labels.tolist() == sum(
        (expected[f"data_batch_{i}"][1] for i in range(1, 6)), []
    )
    data, _ = expected["data_batch_1"]
    # Pixel (row 2, col 5) of channel c sits at c * 1024 + 2 * 32 + 5 in the CHW row.
    for c in range(3):
        assert images[0, 2, 5, c] == pytest.approx(data[0, c * 1024 + 69] / 255.0)
    test = read_cifar10_folder(folder, "test")
    assert len(test) == 4 and test.images.dtype == np.uint8
    with pytest.raises(ValueError, match="split"):
        read_cifar10_folder(folder, "validation")
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        read_cifar10_folder(folder, "train")


def test_synthetic_is_seeded_and_shaped():
    kwargs = dict(num_examples=12, image_shape=(8, 6, 2), num_classes=3, seed=4)
    x, y = load_dataset("synthetic", "train", **kwargs)
    assert x.shape == (12, 8, 6, 2) and y.shape == (12,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(y.tolist()) <= {0, 1, 2}
    x2, y2 = load_dataset("synthetic", "train", **kwargs)
    np.testing.assert_array_equal(x, x2)
    x_test, _ = load_dataset("synthetic", "test", **kwargs)
    assert not np.allclose(x[:4], x_test[:4])


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="name"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(ValueError, match="max_examples"):
        load_dataset("imagenet2012", "validation")


def test_resize_center_crop():
    image = np.zeros((300, 400, 3), np.uint8)
    image[150, 200] = 255
    out = resize_center_crop(image, 256, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="crop"):
        resize_center_crop(image, 100, 224)


def test_tfds_missing_data_fails_at_once(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
        dataset_source("cifar10", "train", data_dir=str(tmp_path))
    # Nothing was downloaded or prepared.
    assert not any(tmp_path.rglob("*.array_record*"))


def test_tfds_mock_data_cifar10_and_imagenet():
    tfds = pytest.importorskip("tensorflow_datasets")
    policy = tfds.testing.MockPolicy.USE_CODE
    with tfds.testing.mock_data(num_examples=5, policy=policy):
        images, labels = load_dataset("cifar10", "test")
        assert images.shape == (5, 32, 32, 3) and labels.dtype == np.int32
        assert 0.0 <= images.min() and images.max() <= 1.0
        images, labels = load_dataset("imagenet2012", "validation", max_examples=2)
        assert images.shape == (2, 224, 224, 3) and images.dtype == np.float32
        assert 0 <= labels.min() and labels.max() < 1000
