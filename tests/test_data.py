"""Tests for mrs_jax.data: digits split, CIFAR folder reader, synthetic, tfds."""

import pickle

import numpy as np
import pytest

from mrs_jax.data import (
    FolderSource,
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


def test_digits_are_read_as_scikit_learn_reads_them_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from mrs_jax.data._datasets import _digits_arrays

    pixels, labels = _digits_arrays()
    np.testing.assert_array_equal(pixels, load_digits().images)
    np.testing.assert_array_equal(labels, load_digits().target)
    code = (
        "import sys; from mrs_jax.data import load_dataset; "
        "load_dataset('digits', 'test'); print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "False"


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


def _write_folder(root, split, classes, per_class, size=(32, 32), suffix=".jpg"):
    import cv2

    rng = np.random.default_rng(len(classes))
    written = {}
    for name in classes:
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            # Flat colours survive JPEG almost exactly: the class is checkable.
            image = np.full((*size, 3), rng.integers(0, 256, 3), np.uint8)
            ok, data = cv2.imencode(suffix, image[..., ::-1])  # RGB -> BGR on disk
            assert ok
            (folder / f"{i:04d}{suffix}").write_bytes(data.tobytes())
            written[(name, i)] = image
    return written


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    written = _write_folder(tmp_path, "train", ["b", "a", "c"], 3)
    images, labels = load_dataset("image_folder", "train", data_dir=str(tmp_path))
    assert images.shape == (9, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # Label 0 is folder "a", read as RGB: the colours match what was written.
    np.testing.assert_allclose(images[0], written[("a", 0)] / 255.0, atol=3 / 255)
    np.testing.assert_allclose(images[8], written[("c", 2)] / 255.0, atol=3 / 255)
    # The source itself is streamed: it holds labels and file names, no pixels.
    source = dataset_source("image_folder", "train", data_dir=str(tmp_path))
    assert isinstance(source, FolderSource) and not hasattr(source, "images")
    assert source.num_classes == 3 and source.classes == ["a", "b", "c"]
    assert source.image_shape == (32, 32, 3) and len(source) == 9
    np.testing.assert_array_equal(source.labels, labels)
    assert source.path(8).endswith("c/0002.jpg")


def test_image_folder_accepts_png_and_upper_case(tmp_path):
    _write_folder(tmp_path, "val", ["x"], 2, suffix=".png")
    _write_folder(tmp_path, "val2", ["y"], 1, suffix=".JPEG")
    assert load_dataset("image_folder", "val", data_dir=str(tmp_path))[0].shape[0] == 2
    assert load_dataset("image_folder", "val2", data_dir=str(tmp_path))[0].shape[0] == 1


def test_cifar10_folders_use_cifar_class_order(tmp_path):
    from mrs_jax.data import CIFAR10_CLASSES

    written = _write_folder(tmp_path, "test", list(CIFAR10_CLASSES), 1)
    images, labels = load_dataset("cifar10", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(labels, np.arange(10))
    for label, name in enumerate(CIFAR10_CLASSES):
        np.testing.assert_allclose(
            images[label], written[(name, 0)] / 255.0, atol=3 / 255
        )


def test_image_folder_follows_a_given_class_order(tmp_path):
    # CIFAR-10's names happen to sort into its label order; the reader must use
    # the given order, not the sort, so test it on names that sort differently.
    from mrs_jax.data import read_image_folder

    written = _write_folder(tmp_path, "train", ["a", "b", "c"], 1)
    images, labels, names = read_image_folder(
        tmp_path / "train", class_order=("c", "a", "b")
    )
    assert names == ["c", "a", "b"]
    np.testing.assert_array_equal(labels, [0, 1, 2])
    np.testing.assert_allclose(images[0], written[("c", 0)], atol=3)
    with pytest.raises(ValueError, match="outside the known classes"):
        read_image_folder(tmp_path / "train", class_order=("a", "b"))


def test_imagenet_folders_are_resized_and_cropped(tmp_path):
    _write_folder(tmp_path, "val", ["n01", "n02"], 1, size=(300, 400))
    images, labels = load_dataset(
        "imagenet2012", "validation", data_dir=str(tmp_path), max_examples=2
    )
    assert images.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(labels, [0, 1])


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        dataset_source("image_folder", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="data_dir"):
        dataset_source("image_folder", "train")
    (tmp_path / "train" / "empty").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        dataset_source("image_folder", "train", data_dir=str(tmp_path))
    # Streamed: a bad file is found when it is read, and named.
    _write_folder(tmp_path, "bad", ["a"], 1)
    (tmp_path / "bad" / "a" / "9999.jpg").write_bytes(b"not a jpeg")
    source = dataset_source("image_folder", "bad", data_dir=str(tmp_path))
    assert source.get_batch(np.array([0]))[0].shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="unreadable image: .*9999.jpg"):
        source.get_batch(np.array([0, 1]))
    with pytest.raises(ValueError, match="unreadable image"):
        load_dataset("image_folder", "bad", data_dir=str(tmp_path))
    _write_folder(tmp_path, "mixed", ["a"], 1)
    _write_folder(tmp_path / "more", "mixed", ["a"], 1, size=(16, 16))
    (tmp_path / "more" / "mixed" / "a" / "0000.jpg").rename(
        tmp_path / "mixed" / "a" / "0001.jpg"
    )
    with pytest.raises(ValueError, match="0001.jpg is 16x16x3.*mixed image sizes"):
        load_dataset("image_folder", "mixed", data_dir=str(tmp_path))
    # A CIFAR-10 folder with a class missing, or with a foreign class folder.
    _write_folder(tmp_path / "c", "test", ["airplane"], 1)
    with pytest.raises(FileNotFoundError, match="no folder for classes"):
        dataset_source("cifar10", "test", data_dir=str(tmp_path / "c"))
