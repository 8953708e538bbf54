"""The attacked images of a run's rows: rebuilt from saved patches
(``JobConfig.save_patches``), or made again by the run's attack and checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mrs_jax.job._config import JobConfig
from mrs_jax.job._group import Classify
from mrs_jax.job._pipeline import attack_group
from mrs_jax.job._source import job_source


def attacked_images(
    config: JobConfig,
    rows: Sequence[dict[str, Any]],
    classify: Classify | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The attacked image of every row of an attacked mode.

    Rows written with ``save_patches`` carry their patch: it is pasted into the
    data-set image at ``patch_top_left``. Otherwise, given the run's
    ``classify``, the run's attack is made again with each row's key
    (``fold_in(key(seed), dataset_index)``, split as the job splits it), and
    each row's ``patch_top_left`` and ``undefended_adv_prediction`` are checked
    against it, so an image that differs from the one the row was written for
    is refused rather than used.

    Args:
      config: the run's config (its data, mode, attack and seed).
      rows: rows of the run, in any order.
      classify: the run's base classifier; needed only without saved patches.
      num_classes: its number of classes (with ``classify``).

    Returns:
      ``(images [N, H, W, C] float32 in [0, 1], labels [N] int32)``.

    Raises:
      ValueError: rows without patches and no ``classify``; a row whose label
        is not the data set's (the data changed); an attack made again that
        does not reproduce a row.
    """
    indices = np.array([r["dataset_index"] for r in rows], np.int64)
    images, labels = job_source(config).get_batch(indices)
    images = np.array(images, np.float32)
    labels = np.asarray(labels, np.int32)
    _check_labels(rows, labels)
    if all(r.get("patch") is not None for r in rows):
        for image, row in zip(images, rows, strict=True):
            patch = np.asarray(row["patch"], np.float32)
            top, left = row["patch_top_left"]
            image[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
        return images, labels
    if classify is None or num_classes is None:
        raise ValueError(
            "the rows have no 'patch' (the run did not set save_patches): pass "
            "classify and num_classes to make the attack again"
        )
    root = jax.random.key(config.seed)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, indices)
    x_adv, corners = attack_group(config, classify, num_classes, images, labels, keys)
    _check_reproduced(rows, corners, np.asarray(classify(x_adv)).argmax(-1))
    return np.asarray(x_adv, np.float32), labels


def _check_labels(rows, labels) -> None:
    wrong = [r["index"] for r, y in zip(rows, labels, strict=True) if r["label"] != y]
    if wrong:
        raise ValueError(
            f"rows {wrong[:5]} have labels other than the data set's: the data "
            "has changed since the run"
        )


def _check_reproduced(rows, corners, undefended) -> None:
    differ = [
        r["index"]
        for r, corner, label in zip(rows, corners, undefended, strict=True)
        if list(corner) != r["patch_top_left"]
        or int(label) != r["undefended_adv_prediction"]
    ]
    if differ:
        raise ValueError(
            f"the attack made again does not reproduce rows {differ[:5]} (patch "
            "position or the base classifier's label): another model, config "
            "or code version wrote them"
        )
