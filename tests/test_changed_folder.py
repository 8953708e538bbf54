"""A resume after the image folder changed is refused, saying what changed."""

import cv2
import numpy as np
import pytest
from _job_helpers import _linear, tiny_config
from jax.tree_util import Partial

from mrs_jax import job

SHAPE = (16, 16, 3)


def _write(path, value):
    ok, data = cv2.imencode(".png", np.full(SHAPE, value, np.uint8))
    path.write_bytes(data.tobytes())


def _folder(root):
    for c, name in enumerate(["a", "b"]):
        (root / "test" / name).mkdir(parents=True)
        for i in range(3):
            _write(root / "test" / name / f"{i}.png", 30 * c + 10 * i)


def _run(data, out, num_images):
    weights = np.random.default_rng(0).normal(size=(*SHAPE, 2)).astype(np.float32)
    config = tiny_config(mode="center", dataset="image_folder", data_dir=str(data),
                         num_images=num_images)
    return job.run(config, out, classify=Partial(_linear, weights), num_classes=2,
                   progress=False, fingerprint="x")


def test_rows_name_their_image_and_a_changed_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    _folder(data)
    rows = _run(data, tmp_path / "run", 4)
    names = {r["image"] for r in rows}
    assert len(names) == 4 and all(n.split("/")[0] in ("a", "b") for n in names)
    # One image added and one deleted: the same count, other files.
    (data / "test" / "a" / "0.png").unlink()
    _write(data / "test" / "a" / "9.png", 200)
    with pytest.raises(ValueError, match="image folder changed since this run began"):
        _run(data, tmp_path / "run", 6)


def test_a_folder_of_another_size_is_refused_naming_both_counts(tmp_path):
    data = tmp_path / "data"
    _folder(data)
    _run(data, tmp_path / "run", 2)
    _write(data / "test" / "b" / "7.png", 99)
    with pytest.raises(ValueError, match="held 6 images when this run began and "
                                         "holds 7 now"):
        _run(data, tmp_path / "run", 3)


def test_an_unchanged_folder_resumes(tmp_path):
    data = tmp_path / "data"
    _folder(data)
    first = _run(data, tmp_path / "run", 2)
    again = _run(data, tmp_path / "run", 4)
    assert again[:2] == first
