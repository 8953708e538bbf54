"""Tests for streamed sources: mrs_jax.streaming, FolderSource, TfdsSource."""

import functools
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from mrs_jax.data import (
    ArraySource,
    FolderSource,
    StreamedSource,
    dataset_source,
    iterate_batches,
    read_image_folder,
    resize_center_crop,
)

SIDE = 16  # the memory test's images: 16 x 16 x 3 = 768 uint8 bytes a file


def _write_jpegs(split_dir, count, classes=4, size=(SIDE, SIDE), seed=0):
    """``count`` random JPEGs spread over ``classes`` class folders."""
    rng = np.random.default_rng(seed)
    folders = [split_dir / f"c{k}" for k in range(classes)]
    for folder in folders:
        folder.mkdir(parents=True)
    # Smooth images (low-frequency noise, upsampled) encode fast and keep detail.
    small = rng.integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
    for i in range(count):
        image = cv2.resize(small[i], size[::-1], interpolation=cv2.INTER_LINEAR)
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        (folders[i % classes] / f"{i:05d}.jpg").write_bytes(data.tobytes())


def _plain_cv2(path, resize, crop):
    """The oracle: a bare OpenCV read, BGR -> RGB, shorter side to ``resize``
    (INTER_AREA), centre ``crop``; written out here, not through mrs_jax."""
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    new_h = max(resize, round(height * resize / min(height, width)))
    new_w = max(resize, round(width * resize / min(height, width)))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return image[top : top + crop, left : left + crop]


def test_decoded_images_equal_a_plain_opencv_read_resize_crop(tmp_path):
    _write_jpegs(tmp_path / "train", 40, classes=3, size=(16, 20))
    crop = functools.partial(resize_center_crop, resize=12, crop=10)
    source = FolderSource(tmp_path / "train", transform=crop, num_workers=3)
    assert len(source) == 40 and source.num_classes == 3
    assert source.image_shape == (10, 10, 3) and source.classes == ["c0", "c1", "c2"]
    files = sorted((tmp_path / "train").glob("*/*.jpg"))  # class, then name order
    indices = np.array([39, 0, 5, 5, 17, 26])  # any order, repeats allowed
    images, labels = source.get_batch(indices)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    for image, label, index in zip(images, labels, indices, strict=True):
        expected = _plain_cv2(files[index], 12, 10)
        np.testing.assert_array_equal(image, expected.astype(np.float32) / 255.0)
        assert label == int(files[index].parent.name[1:])
    # Streaming gives the same batches, in order, the last one short.
    order = np.random.default_rng(1).permutation(40)
    batches = list(source.iter_batches(order, 16, prefetch=1))
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    streamed = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(streamed, source.get_batch(order)[0])
    uint8, _ = source.get_uint8_batch(indices[:1])
    assert uint8.dtype == np.uint8
    np.testing.assert_array_equal(uint8[0], _plain_cv2(files[39], 12, 10))
    source.close()


def _peak_bytes(read):
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _stream_everything(split_dir):
    """Opens, iterates in a random order and random-accesses a folder."""
    with FolderSource(split_dir, num_workers=2) as source:
        order = np.random.default_rng(0).permutation(len(source))
        total = 0
        for images, _ in source.iter_batches(order, 64, prefetch=2):
            total += len(images)
        for start in (0, len(source) // 2, len(source) - 64):
            images, _ = source.get_batch(order[start : start + 64])
            total += len(images)
    assert total == len(source) + 3 * 64


def test_peak_memory_does_not_grow_with_the_folder(tmp_path):
    small, large = 1200, 2400
    _write_jpegs(tmp_path / "small", small, seed=1)
    _write_jpegs(tmp_path / "large", large, seed=2)
    _stream_everything(tmp_path / "small")  # warm-up: imports, caches, pool code
    streamed = [_peak_bytes(lambda d=d: _stream_everything(d)) for d in (
        tmp_path / "small", tmp_path / "large"
    )]  # fmt: skip
    # What each added file may cost: its name and label (and a transient entry in
    # the directory listing), far below its 768 bytes of pixels.
    growth_per_file = (streamed[1] - streamed[0]) / (large - small)
    assert growth_per_file < 128, (streamed, growth_per_file)
    # One batch of 64 float32 images is 196 KB; the peak is a few batches.
    assert streamed[1] < 4_000_000, streamed
    # The measurement sees pixels: reading the folders into memory grows by them.
    in_memory = [
        _peak_bytes(lambda d=d: read_image_folder(d, max_workers=2))
        for d in (tmp_path / "small", tmp_path / "large")
    ]
    pixel_bytes = SIDE * SIDE * 3
    assert (in_memory[1] - in_memory[0]) / (large - small) >= 0.9 * pixel_bytes


class _Counting(StreamedSource):
    """A source of ``size`` constant images that records which it decoded."""

    def __init__(self, size, num_workers=2):
        super().__init__(num_workers)
        self.size, self.num_classes, self.image_shape = size, 3, (2, 2, 1)
        self.loaded, self._lock = [], threading.Lock()

    def __len__(self):
        return self.size

    def _load(self, index):
        with self._lock:
            self.loaded.append(index)
        return np.full((2, 2, 1), index % 256, np.uint8), index % 3


def _settled_count(source, expected, timeout=10.0):
    """The number of decodes once the workers are idle (waits for ``expected``)."""
    deadline = time.monotonic() + timeout
    while len(source.loaded) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return len(source.loaded)


def test_prefetch_decodes_ahead_but_only_prefetch_batches():
    source = _Counting(100)
    batches = source.iter_batches(np.arange(100), 4, prefetch=2)
    assert source.loaded == []  # nothing starts before the first batch is asked
    images, labels = next(batches)
    np.testing.assert_array_equal(images[:, 0, 0, 0] * 255, [0, 1, 2, 3])
    np.testing.assert_array_equal(labels, [0, 1, 2, 0])
    # The first batch and the two after it, and nothing more.
    assert _settled_count(source, 12) == 12
    assert sorted(source.loaded) == list(range(12))
    next(batches)
    assert _settled_count(source, 16) == 16
    batches.close()  # an abandoned iterator
    assert _settled_count(source, 16, timeout=0) == 16
    no_prefetch = _Counting(100)
    next(no_prefetch.iter_batches(np.arange(100), 4, prefetch=0))
    assert _settled_count(no_prefetch, 4, timeout=0) == 4


def test_a_failed_decode_reaches_the_caller():
    class Broken(_Counting):
        def _load(self, index):
            if index == 6:
                raise ValueError("unreadable image: example 6")
            return super()._load(index)

    source = Broken(20)
    batches = source.iter_batches(np.arange(20), 4)
    next(batches)
    with pytest.raises(ValueError, match="example 6"):
        next(batches)
    with pytest.raises(ValueError, match="example 6"):
        source.get_batch([5, 6])
    source.image_shape = (3, 2, 1)
    with pytest.raises(ValueError, match="example 1 is 2x2x1.*mixed image sizes"):
        source.get_batch([1])


def test_the_random_access_contract_and_its_errors(tmp_path):
    _write_jpegs(tmp_path / "val", 8, classes=2)
    source = dataset_source("image_folder", "val", data_dir=str(tmp_path))
    # What the certification job reads: np.array of a list of indices.
    images, labels = source.get_batch(np.array([7, 2]))
    assert images.shape == (2, SIDE, SIDE, 3) and labels.tolist() == [1, 0]
    empty, no_labels = source.get_batch(np.array([], int))
    assert empty.shape == (0, SIDE, SIDE, 3) and no_labels.shape == (0,)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\); got 0..8"):
        source.get_batch(np.array([0, 8]))
    with pytest.raises(ValueError, match="indices must lie"):
        source.get_batch(np.array([-1]))
    with pytest.raises(ValueError, match="1-D"):
        source.get_batch(np.zeros((2, 2), int))
    with pytest.raises(TypeError, match="integers"):
        source.get_batch(np.array([0.0]))
    with pytest.raises(ValueError, match="batch_size"):
        source.iter_batches(np.arange(8), 0)
    with pytest.raises(ValueError, match="prefetch"):
        source.iter_batches(np.arange(8), 2, prefetch=-1)
    with pytest.raises(ValueError, match="num_workers"):
        FolderSource(tmp_path / "val", num_workers=0)
    with pytest.raises(TypeError, match="transform"):
        FolderSource(tmp_path / "val", transform="crop")
    with pytest.raises(ValueError, match="image_shape"):
        FolderSource(tmp_path / "val", image_shape=(16, 16))


def test_imagenet_folders_are_streamed(tmp_path):
    _write_jpegs(tmp_path / "val", 4, classes=2, size=(300, 260))
    source = dataset_source("imagenet2012", "validation", data_dir=str(tmp_path))
    assert isinstance(source, FolderSource) and not hasattr(source, "images")
    assert source.image_shape == (224, 224, 3) and source.num_classes == 2
    images, _ = source.get_batch(np.array([3]))
    files = sorted((tmp_path / "val").glob("*/*.jpg"))
    expected = _plain_cv2(files[3], 256, 224).astype(np.float32) / 255.0
    np.testing.assert_array_equal(images[0], expected)


def test_iterate_batches_streams_any_source():
    images = np.random.default_rng(0).uniform(size=(10, 2, 2, 1)).astype(np.float32)
    memory = ArraySource(images, np.arange(10, dtype=np.int32) % 3, 3)
    order = np.array([9, 3, 1, 0, 4, 2, 8])
    batches = list(iterate_batches(memory, order, 3))
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(
        np.concatenate([b[0] for b in batches]), images[order]
    )
    streamed = _Counting(10)
    got = np.concatenate([b[1] for b in iterate_batches(streamed, order, 2)])
    np.testing.assert_array_equal(got, order % 3)
    with pytest.raises(TypeError, match="get_batch"):
        iterate_batches(images, order, 3)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(memory, order, 0)


def test_tfds_sources_stream_in_worker_threads():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(
        num_examples=9, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        source = dataset_source("cifar10", "test")
        assert isinstance(source, StreamedSource) and len(source) == 9
        whole = source.get_batch(np.arange(9))
        batches = list(iterate_batches(source, np.arange(9), 4))
    assert [len(b[1]) for b in batches] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), whole[0])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), whole[1])
    assert whole[0].shape == (9, 32, 32, 3) and 0 <= whole[0].min() <= 1


def test_the_benchmark_runs_both_loops_on_a_small_folder(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_streaming
    finally:
        sys.path.pop(0)
    argv = "--images 24 --size 20x24 --resize 16 --crop 14 --threads 2 --repeats 1"
    result = bench_streaming.main(argv.split() + ["--batch-size", "8"])
    assert result["images"] == 24 and result["files_in_folder"] == 24
    assert result["bare_images_per_s"] > 0 and result["source_images_per_s"] > 0
    assert "| bare OpenCV read-decode-resize-crop |" in capsys.readouterr().out


def test_training_reads_a_folder_through_the_prefetching_iterator(
    tmp_path, monkeypatch
):
    """A tiny training on class folders draws each epoch's batches from
    ``iter_batches``, in the epoch's order (what it decodes is tested above)."""
    from mrs_jax.training import TrainConfig, train

    for split, count in (("train", 64), ("test", 16)):
        _write_jpegs(tmp_path / "data" / split, count, classes=2, size=(12, 12))
    seen = []
    streamed_iter = FolderSource.iter_batches

    def recording(self, indices, batch_size, **kwargs):
        seen.append((len(self), np.asarray(indices).copy(), batch_size))
        return streamed_iter(self, indices, batch_size, **kwargs)

    monkeypatch.setattr(FolderSource, "iter_batches", recording)
    config = TrainConfig(
        dataset="image_folder",
        data_dir=str(tmp_path / "data"),
        model="tiny_cnn",
        num_classes=2,
        epochs=1,
        batch_size=16,
        eval_batch_size=16,
        w_min=2,
        w_max=5,
    )
    streamed = train(config, tmp_path / "run", progress=False)
    order = np.random.default_rng([config.seed, 0]).permutation(64)
    # Before training, each split is decoded once in order (verify, batches of
    # 1,024); then the epoch's batches.
    checked = [(size, list(indices)) for size, indices, batch in seen if batch == 1024]
    assert checked == [(64, list(range(64))), (16, list(range(16)))]
    seen = [entry for entry in seen if entry[2] != 1024]
    assert len(seen) == 1 and seen[0][0] == 64 and seen[0][2] == 16
    np.testing.assert_array_equal(seen[0][1], order)
    assert np.isfinite(streamed["loss"]) and 0 <= streamed["clean_accuracy"] <= 1


def test_uint8_batches_are_the_decoded_pixels_and_float32_their_scaling(tmp_path):
    _write_jpegs(tmp_path / "train", 12)
    with FolderSource(tmp_path / "train", num_workers=2) as source:
        order = np.arange(12)[::-1]
        as_uint8 = list(source.iter_batches(order, 5, dtype=np.uint8))
        as_float = list(source.iter_batches(order, 5))
        with pytest.raises(ValueError, match="dtype must be float32 or uint8"):
            source.iter_batches(order, 5, dtype=np.int16)
    assert [b[0].dtype for b in as_uint8] == [np.uint8] * 3
    for (pixels, labels), (scaled, same_labels) in zip(as_uint8, as_float, strict=True):
        np.testing.assert_array_equal(labels, same_labels)
        np.testing.assert_array_equal(pixels.astype(np.float32) / 255.0, scaled)
