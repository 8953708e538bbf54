"""Image-folder classes are matched by name, never by sorted position."""

import json

import cv2
import numpy as np
import pytest
from _job_helpers import _linear, tiny_config
from jax.tree_util import Partial

from mrs_jax import job
from mrs_jax.data import dataset_source
from mrs_jax.training import TrainConfig, data_sources
from mrs_jax.training._train import _model_meta

SHAPE = (16, 16, 3)


def _folder(root, split, classes, per_class=2):
    for c, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = np.full(SHAPE, 40 * (c + 1), np.uint8)
            ok, data = cv2.imencode(".png", image)
            (folder / f"{i}.png").write_bytes(data.tobytes())


def _config(root, **changes):
    return TrainConfig(
        dataset="image_folder", data_dir=str(root), model="tiny_cnn",
        num_classes=3, epochs=1, batch_size=2, **changes,
    )


def _three_classes():
    weights = np.random.default_rng(0).normal(size=(*SHAPE, 3)).astype(np.float32)
    return Partial(_linear, weights)


def test_hidden_folders_are_not_classes(tmp_path):
    _folder(tmp_path, "test", ["a", "b", "c"])
    (tmp_path / "test" / ".thumbnails" / "x").mkdir(parents=True)
    source = dataset_source("image_folder", "test", data_dir=str(tmp_path))
    assert source.classes == ["a", "b", "c"]


def test_model_json_records_the_class_names(tmp_path):
    _folder(tmp_path, "train", ["a", "b", "c"])
    _folder(tmp_path, "test", ["a", "b", "c"])
    train, _ = data_sources(_config(tmp_path))
    assert _model_meta(_config(tmp_path), train)["classes"] == ["a", "b", "c"]


def test_a_test_split_naming_other_classes_is_refused_for_training(tmp_path):
    _folder(tmp_path, "train", ["a", "b", "c"])
    _folder(tmp_path, "test", ["C", "a", "b"])
    with pytest.raises(ValueError, match=r"different classes: \['a', 'b', 'c'\]"):
        data_sources(_config(tmp_path))


def test_a_job_refuses_a_folder_whose_classes_differ_from_the_model(tmp_path):
    _folder(tmp_path / "renamed", "test", ["C", "a", "b"])
    _folder(tmp_path / "good", "test", ["a", "b", "c"])
    meta = {"dataset": "image_folder", "image_shape": list(SHAPE),
            "classes": ["a", "b", "c"]}

    def run(data, out):
        config = tiny_config(
            mode="center", dataset="image_folder", data_dir=str(tmp_path / data),
            num_images=1,
        )
        return job.run(config, tmp_path / out, classify=_three_classes(),
                       num_classes=3, meta=meta, progress=False, fingerprint="x")

    with pytest.raises(ValueError, match=r"classes are \['a', 'b', 'c'\] but"):
        run("renamed", "bad")
    assert not (tmp_path / "bad" / "run.json").exists()
    run("good", "ok")  # the same names in the same order run
    record = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert record["classes"] == ["a", "b", "c"]
