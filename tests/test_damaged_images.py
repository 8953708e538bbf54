"""Damaged or oddly named image files: one line naming the file, never a row."""

import os

import cv2
import numpy as np
import pytest

from mrs_jax.data import FolderSource
from mrs_jax.data._image_folder import decode_rgb


def _jpeg(path, seed=0):
    # Encoded in memory and written by Python: OpenCV's own file functions
    # crash on a name that is not UTF-8.
    image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    with open(path, "wb") as file:
        file.write(data.tobytes())
    return path


def test_a_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    whole = _jpeg(tmp_path / "whole.jpg")
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert decode_rgb(whole).shape == (32, 32, 3)
    message = r"damaged image: .*cut\.jpg \(JPEG truncated\)"
    with pytest.raises(ValueError, match=message):
        decode_rgb(cut)


def test_a_truncated_png_is_refused(tmp_path):
    path = tmp_path / "a.png"
    ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    path.write_bytes(data.tobytes()[:-20])
    with pytest.raises(ValueError, match="PNG truncated"):
        decode_rgb(path)


def test_a_file_name_that_is_not_utf8_decodes(tmp_path):
    folder = tmp_path / "test" / "c\udcff"  # a class folder named by byte 0xff
    os.makedirs(os.fsencode(folder))
    name = os.fsencode(folder) + b"/\xfe.jpg"
    _jpeg(name)
    source = FolderSource(tmp_path / "test")
    images, labels = source.get_batch(np.array([0]))
    assert images.shape == (1, 32, 32, 3) and labels.tolist() == [0]


def test_a_damaged_file_in_a_folder_is_named_when_read(tmp_path):
    folder = tmp_path / "test" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        _jpeg(folder / f"{i}.jpg", seed=i)
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data[:200])
    source = FolderSource(tmp_path / "test")
    assert source.get_batch(np.array([0, 2]))[0].shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match=r"damaged image: .*a/1\.jpg"):
        source.get_batch(np.array([0, 1]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read anything")
def test_an_unreadable_file_says_permission_denied(tmp_path):
    path = _jpeg(tmp_path / "x.jpg")
    path.chmod(0)
    with pytest.raises(ValueError, match="x.jpg: permission denied"):
        decode_rgb(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="cannot read .*gone.jpg"):
        decode_rgb(tmp_path / "gone.jpg")


def test_a_failed_command_does_not_wait_for_idle_decoding_threads(tmp_path):
    import time

    from mrs_jax.commands._cli import join_worker_threads

    folder = tmp_path / "test" / "a"
    folder.mkdir(parents=True)
    for i in range(4):
        _jpeg(folder / f"{i}.jpg", seed=i)
    source = FolderSource(tmp_path / "test", num_workers=2)
    source.get_batch(np.arange(4))  # the pool's threads now wait for work
    started = time.monotonic()
    join_worker_threads(timeout_s=5.0)
    assert time.monotonic() - started < 2.0


def test_a_symlink_loop_named_like_an_image_is_one_line(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "test" / name).mkdir(parents=True)
        _jpeg(tmp_path / "test" / name / "0.jpg")
    os.symlink("loop.jpg", tmp_path / "test" / "a" / "loop.jpg")
    with pytest.raises(ValueError, match=r"loop.jpg: cannot be read \(Too many levels"):
        FolderSource(tmp_path / "test")


def test_training_refuses_a_damaged_file_before_any_step(tmp_path):
    """The policy for training: every image of the folder is decoded once up
    front, and a damaged one refuses the run, named (never skipped silently,
    never found an epoch in)."""
    from mrs_jax.training import TrainConfig, data_sources, train

    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(4):
                _jpeg(tmp_path / "data" / split / name / f"{i}.jpg", seed=i)
    damaged = tmp_path / "data" / "train" / "b" / "3.jpg"
    damaged.write_bytes(damaged.read_bytes()[:200])
    config = TrainConfig(
        dataset="image_folder", data_dir=str(tmp_path / "data"), model="tiny_cnn",
        num_classes=2, image_shape=(32, 32, 3), epochs=1, batch_size=4,
        max_eval_examples=4, eval_batch_size=4,
    )  # fmt: skip
    # Refused when the data opens, before a model or a step exists.
    with pytest.raises(ValueError, match=r"damaged image: .*b/3\.jpg"):
        data_sources(config)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"damaged image: .*b/3\.jpg"):
        train(config, workdir, progress=False)
    assert not list(workdir.glob("checkpoints/*"))
