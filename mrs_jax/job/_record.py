"""What ``run.json`` records of a run's classifier, and the run's id.

The weights fingerprint (``mrs_jax.models.classifier_fingerprint``: the
checkpoint's, attached by ``load_classifier``, the same that ``mrs-certify``
records; else a SHA-256 of its weights; or the caller's ``fingerprint`` for a
plain function), the model name, training data set, image shape and training
sigma (:func:`model_record`); the ``run_id`` every row carries
(:func:`identify`); and the refusal of a checkpoint trained on another data set
or image shape than the job's data (:func:`check_model_fits`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrs_jax.job._run_dir import read_run_file
from mrs_jax.models import (
    classifier_fingerprint,
    weights_fingerprint as weights_fingerprint,
)

# Config fields that set speed and memory, not the draws: CERTIFY's noise for draw
# i comes from fold_in(key, i) whatever the batch, so a resume may change them.
EXECUTION_FIELDS = (
    "batch_size",
    "localize_batch_size",
    "pc_batch_size",
    "images_per_batch",
)


# A run's images are the first num_images of one fixed permutation of the split,
# so a resume may ask for more of them (never fewer: rows past the end would stay).
GROWING_FIELD = "num_images"
# The facts about the classifier that a resumed run must share with the first.
MODEL_FIELDS = ("weights_sha256", "model", "dataset", "image_shape", "train_sigma")


def model_record(
    classify: Any, meta: Mapping[str, Any] | None, fingerprint: str | None = None
) -> dict[str, Any]:
    """The classifier's identity for ``run.json``: fingerprint and checkpoint facts.

    Args:
      classify: the base classifier (see ``mrs_jax.models.classifier_fingerprint``).
      meta: the checkpoint's ``model.json`` facts (``model``, ``dataset``,
        ``image_shape``, ``sigma`` = training sigma); missing ones are None.
      fingerprint: the caller's name for the weights (:func:`check_fingerprint`);
        recorded in place of the classifier's own when given.
    """
    meta = dict(meta or {})
    shape = meta.get("image_shape")
    if fingerprint is None:
        fingerprint = classifier_fingerprint(classify)
    return {
        "weights_sha256": fingerprint,
        "model": meta.get("model"),
        "dataset": meta.get("dataset"),
        "image_shape": None if shape is None else [int(v) for v in shape],
        "train_sigma": None if meta.get("sigma") is None else float(meta["sigma"]),
    }


def check_fingerprint(fingerprint: Any) -> str | None:
    """Checks a caller's weights fingerprint: None or a non-empty str.

    Raises:
      TypeError: not a str.
      ValueError: an empty (or blank) str.
    """
    if fingerprint is None:
        return None
    if not isinstance(fingerprint, str):
        raise TypeError(
            f"fingerprint must be a str naming the weights, got "
            f"{type(fingerprint).__name__}"
        )
    if not fingerprint.strip():
        raise ValueError("fingerprint must be a non-empty str naming the weights")
    return fingerprint


def run_id(record: Mapping[str, Any]) -> str:
    """A run's id: a hash of what decides its rows (config and model).

    Batch sizes and ``num_images`` are left out (they do not change a row), so
    the processes of one run, a resumed run and an extended one share it; a
    run of another config or model has another.
    """
    config = {
        k: v
        for k, v in record["config"].items()
        if k not in EXECUTION_FIELDS and k != GROWING_FIELD
    }
    identity = json.dumps({"config": config, "model": record["model"]}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def identify(
    out_dir: str | os.PathLike,
    record: Mapping[str, Any],
    *,
    source_size: int,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """``record`` completed for ``run.json``: fingerprint, split size, run id.

    A run keeps the ``run_id`` its ``run.json`` already has; a legacy run
    (``run.json`` written before run ids) stays legacy (``run_id`` None); a new
    run gets :func:`run_id`.

    Args:
      out_dir: the run directory (its ``run.json`` is read, if any).
      record: the job's record (``config``, ``model``, ...).
      source_size: the number of images in the run's split (for
        ``mrs_jax.rows.selection``).
      fingerprint: the caller's weights fingerprint, replacing the record's.
    """
    record = json.loads(json.dumps(record))  # a copy, as run.json reads back
    if fingerprint is not None:
        record["model"]["weights_sha256"] = fingerprint
    record["source_size"] = int(source_size)
    existing = read_run_file(Path(out_dir))
    record["run_id"] = (
        run_id(record) if existing is None else existing.get("run_id") or None
    )
    return record


def row_stamp(record: Mapping[str, Any]) -> dict[str, Any]:
    """What each row of the run carries to tie it to ``record``: its run id
    (nothing for a legacy run)."""
    return {} if record.get("run_id") is None else {"run_id": record["run_id"]}


def check_model_fits(
    meta: Mapping[str, Any] | None,
    dataset: str,
    image_shape: Sequence[int],
    classes: Sequence[str] | None = None,
) -> None:
    """Refuses a checkpoint trained on another data set, image shape or classes.

    ``classes``: the job's class names in label order (image folders); refused
    where the checkpoint's ``model.json`` names other ones, or the same ones
    in another order.

    Raises:
      ValueError: naming the checkpoint's and the job's values.
    """
    meta = meta or {}
    trained_on = meta.get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise ValueError(
            f"the checkpoint was trained on dataset {trained_on!r} but the job "
            f"certifies {dataset!r}; use a checkpoint trained on {dataset!r}"
        )
    shape = meta.get("image_shape")
    if shape is not None and [int(v) for v in shape] != [int(v) for v in image_shape]:
        raise ValueError(
            f"the checkpoint was trained on images of shape {list(shape)} but the "
            f"job's {dataset!r} images have shape {list(image_shape)}"
        )
    trained = meta.get("classes")
    if trained is not None and classes is not None and list(trained) != list(classes):
        raise ValueError(
            f"the checkpoint's classes are {list(trained)} but the job's "
            f"{dataset!r} folders name {list(classes)} (labels are class folders "
            "in that order)"
        )
