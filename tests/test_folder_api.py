"""The folder source and its batch iterator are public, all images by default."""

import cv2
import numpy as np

import mrs_jax


def test_every_image_of_a_folder_in_batches(tmp_path):
    for c, name in enumerate(["b", "a"]):
        (tmp_path / "test" / name).mkdir(parents=True)
        for i in range(3):
            ok, data = cv2.imencode(".png", np.full((8, 8, 3), 40 * c + i, np.uint8))
            (tmp_path / "test" / name / f"{i}.png").write_bytes(data.tobytes())
    source = mrs_jax.FolderSource(tmp_path / "test")
    assert source.classes == ["a", "b"] and len(source) == 6
    batches = list(mrs_jax.iterate_batches(source, batch_size=4))
    assert [len(labels) for _, labels in batches] == [4, 2]
    labels = np.concatenate([labels for _, labels in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert batches[0][0].shape == (4, 8, 8, 3) and batches[0][0].dtype == np.float32
