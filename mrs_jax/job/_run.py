"""The certification job: attack, localise, certify each test image, one row each.

Modes (``MRS_SPEC.md`` sections 5 and 6):

- ``practical``: attack the image with a PGD patch, localise the patch on
  ``x_adv`` by joint voting, certify the classifier smoothed inside the located
  mask at ``x_adv`` (the paper's Table 1, Fig. 2a/d). The same pipeline also runs
  on the clean image (``clean_prediction``), and the undefended base classifier is
  evaluated on ``x_adv`` (``undefended_adv_prediction``). ``covered`` says whether
  the located mask contains the whole patch; "certified accuracy" is the
  *localised* certified R-accuracy, conditional on localisation.
- ``center`` / ``gradcam``: the theoretical settings (Fig. 2b/c/e/f): the mask is
  the s x s window at the image centre, or the s x s window of greatest Grad-CAM
  activation for the base classifier's predicted class; CERTIFY on the clean
  image. Grad-CAM needs a model split into features and head
  (``features_and_head``); without one the job refuses to start rather than fall
  back to another saliency row by row.
- ``clean``: the practical pipeline (localise, certify) on clean images only.
- ``adaptive``: ``practical`` with ``mrs_jax.adaptive_patch_attack`` (white-box
  against localisation and the masked smoothing at the job's ``sigma`` and
  ``dilation``) in place of the PGD patch; the same row fields.
- ``double_masking``: PatchCleanser on the clean image: a certificate for
  every patch position, deterministic, with no radius (``certificate``:
  ``"every_patch_position"``; ``case``: the inference case that decided).
- ``smoothed_double_masking``: PatchCleanser's inference with masked Gaussian
  noise in place of the grey fill (``mrs_jax.smoothed_double_masking``): a
  certificate for every patch position and every patch content of l2 norm
  below the target radius (default ``"unrestricted"``).

``target_radius`` (not for ``double_masking``): the certify step decides with
``certify_at`` whether the prediction is certified at that radius, with at
most ``n`` estimation draws (``mrs_jax.pipeline``).

Row fields: one line each in ``mrs_jax.core.ROW_FIELDS`` (which modes write
them, and what they mean); abstentions (``ABSTAIN``, -1) count as wrong.

Batches: every mode runs groups of ``images_per_batch`` images through one
device program per step (``mrs_jax.pipeline``); the rows are the same as image
by image (one per image, flushed as its group finishes; a resumed run forms its
groups from the images not yet done).

Keys: image ``dataset_index`` uses ``fold_in(key(seed), dataset_index)``, split
into attack, clean-certify and certify keys, so a row does not depend on the
order of images, on the number of processes or on resuming.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import mrs_jax.job._config as job_config
import mrs_jax.job._pipeline as pipeline
import mrs_jax.job._processes as processes
import mrs_jax.job._record as run_record
import mrs_jax.job._resume as resume
import mrs_jax.job._run_dir as run_dir
from mrs_jax import rows
from mrs_jax.core import checks as _checks
from mrs_jax.job._config import INPAINT_METHODS, MODES, JobConfig, config_defaults
from mrs_jax.job._pipeline import image_row
from mrs_jax.job._progress import certify_bar, running_accuracies
from mrs_jax.job._source import job_source

RUN_FILE = run_dir.RUN_FILE
Classify = Callable[[jax.Array], jax.Array]
__all__ = [
    "INPAINT_METHODS",
    "MODES",
    "JobConfig",
    "image_row",
    "run",
    "running_accuracies",
    "validate",
]


def run(
    config: JobConfig,
    out_dir: str | os.PathLike,
    *,
    classify: Classify,
    num_classes: int,
    features_and_head: tuple[Classify, Classify] | None = None,
    meta: dict[str, Any] | None = None,
    process_index: int = 0,
    process_count: int = 1,
    progress: bool = True,
    barrier: Callable[[str], None] | None = None,
    fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) a certification job and returns every row on disk.

    Every input is checked (:func:`validate`) before anything is written. The
    run directory is then held by this process alone (an OS lock; each process
    of a multi-process run holds its own shard), and ``run.json`` records the
    config and the classifier (weights fingerprint, model, training data set,
    image shape, training sigma) and the run's ``run_id``, which every row
    carries. Rows already in ``out_dir`` are kept and their images skipped; a
    run directory written with a different config or classifier is refused,
    naming what differs, and so are rows with no ``run.json``, a row of another
    run (its ``run_id``), of an index past ``num_images`` or of another image
    than the run's for that index. A classifier that is a plain function has
    no weights to fingerprint: its first run records ``weights_sha256: None``
    and a resume is refused unless ``fingerprint`` names the weights (pass the
    same one from the first run on). Process ``process_index`` of
    ``process_count`` takes the images whose position ``i`` in the selection has
    ``i % process_count == process_index``; ``barrier`` (a cross-process
    barrier, e.g. ``multihost_utils.sync_global_devices``) is called before
    process 0 merges the shards into ``rows.jsonl``; a single-process resume of
    a multi-process run merges every shard's rows into ``rows.jsonl`` too.

    Args:
      config: the run's settings.
      out_dir: run directory (``run.json``, ``rows.jsonl``).
      classify: the base classifier, ``[B, H, W, C] -> [B, num_classes]`` logits;
        a pytree (``as_classifier``) so its weights can be fingerprinted
        (``run_record.weights_fingerprint`` hashes a ``Partial``'s leaves).
      num_classes: K.
      features_and_head: ``(features_fn, head_fn)`` split of the model for
        Grad-CAM; required by mode ``gradcam``.
      meta: the checkpoint's facts (``model``, ``dataset``, ``image_shape``,
        ``sigma``: training sigma), checked against the job's data and
        recorded in ``run.json``.
      process_index, process_count: this process's share of the images.
      progress: show a tqdm bar with running accuracies.
      barrier: called with a name before merging when ``process_count > 1``.
      fingerprint: a non-empty str naming the classifier's weights (e.g. a
        checkpoint's hash), recorded as ``weights_sha256`` in place of the
        pytree fingerprint; needed to resume a run of a plain-function
        classifier.

    Raises:
      ValueError, TypeError: a bad input (see :func:`validate`), a run
        directory holding another config or classifier, rows not of this run,
        or a resume without a fingerprint.
      OSError: this process's rows file cannot be appended to (``run.json`` is
        left as it was).
      runlock.LockedError: another process holds the run directory.
    """
    _checks.callable_(classify, "classify")
    process_index, process_count = _process_share(process_index, process_count)
    fingerprint = run_record.check_fingerprint(fingerprint)
    source = validate(
        config,
        out_dir,
        num_classes=num_classes,
        meta=meta,
        features_and_head=features_and_head,
    )
    out_dir = Path(out_dir)
    job_record = _run_record(config, source, num_classes, classify, meta)
    identity = dict(source_size=len(source), fingerprint=fingerprint)
    record = run_record.identify(out_dir, job_record, **identity)
    defaults = config_defaults()
    resume.check_resume(out_dir, record, defaults)  # before any write
    if process_count > 1:
        processes.check_processes_agree(record, out_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    with run_dir.hold(out_dir, process_index, process_count):
        # Checked again under the lock: another process may have started it.
        record = run_record.identify(out_dir, job_record, **identity)
        resume.check_resume(out_dir, record, defaults)
        resume.check_rows_on_disk(
            out_dir,
            source_size=len(source),
            process_index=process_index,
            process_count=process_count,
            image_name=getattr(source, "image_name", None),
        )
        # Every process writes it (the same record) before its first row, so
        # no rows file ever stands without its run.json.
        if run_dir.read_run_file(out_dir) != record:
            # New, extended, or resumed with other batch sizes (check_resume).
            run_dir.write_run_file(out_dir, record)
        _certify_images(
            config,
            out_dir,
            source,
            classify,
            num_classes,
            features_and_head,
            process_index,
            process_count,
            progress,
            run_record.row_stamp(record),
        )
        _merge_shards(out_dir, process_index, process_count, barrier)
    return rows.all_rows(out_dir)


def _process_share(process_index, process_count) -> tuple[int, int]:
    """``(process_index, process_count)``, checked: ``0 <= index < count``."""
    process_count = _checks.positive_int(process_count, "process_count")
    process_index = _checks.positive_int(process_index, "process_index", minimum=0)
    if process_index >= process_count:
        raise ValueError(
            f"process_index must be < process_count={process_count}, "
            f"got {process_index}"
        )
    return process_index, process_count


def _merge_shards(out_dir, process_index, process_count, barrier) -> None:
    """Process 0 merges every process's rows into ``rows.jsonl`` once all are
    written (``barrier``); a single-process resume of a multi-process run
    merges them too, into one complete file."""
    if process_count > 1:
        if barrier is not None:
            barrier("mrs_jax.job._run.rows")
        if process_index == 0:
            rows.merge(out_dir)
    elif len(rows.row_files(out_dir)) > 1:
        rows.merge(out_dir)


def validate(
    config: JobConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    meta: dict[str, Any] | None = None,
    features_and_head: tuple[Classify, Classify] | None = None,
):
    """Checks a job before anything is written; returns its data source.

    Checks the config against its data (enough images, a patch that fits the
    image), ``out_dir`` (not a file, writable), and, where given, the
    classifier: its class count, the data set and image shape it was trained
    on (``meta``), and a features/head split for mode ``gradcam``.

    Raises:
      ValueError, TypeError, NotADirectoryError, PermissionError: naming the
        argument, field or path at fault.
    """
    if not isinstance(config, JobConfig):
        raise TypeError(f"config must be a JobConfig, got {type(config).__name__}")
    if num_classes is not None:
        num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    if out_dir is not None:
        run_dir.check_out_dir(out_dir)
    source = job_source(config)
    if config.num_images > len(source):
        raise ValueError(
            f"num_images={config.num_images} exceeds the {len(source)} images of "
            f"{config.dataset}/{config.split}"
        )
    shape = tuple(int(v) for v in source.image_shape)
    if config.patch_size > min(shape[:2]):
        raise ValueError(
            f"patch_size={config.patch_size} does not fit in the "
            f"{shape[0]}x{shape[1]} images of {config.dataset}"
        )
    if num_classes is not None and source.num_classes != num_classes:
        raise ValueError(
            f"num_classes={num_classes} (the classifier's) does not match the "
            f"{source.num_classes} classes of {config.dataset}"
        )
    if meta is not None:
        run_record.check_model_fits(
            meta, config.dataset, shape, getattr(source, "classes", None)
        )
    job_config.check_reachable(config, shape[-1])
    if config.mode == "gradcam" and num_classes is not None:
        if features_and_head is None:
            raise ValueError(
                "mode 'gradcam' needs the model's features/head split "
                "(features_and_head) and this classifier has none; use mode "
                "'center' or a model with features() and head"
            )
        if len(features_and_head) != 2:
            raise TypeError("features_and_head must be (features_fn, head_fn)")
        for fn, name in zip(features_and_head, ("features_fn", "head_fn"), strict=True):
            _checks.callable_(fn, name)
    return source


def _run_record(config, source, num_classes, classify, meta) -> dict[str, Any]:
    shape = [int(v) for v in source.image_shape]
    model = run_record.model_record(classify, meta)
    return {
        "mode": config.mode,
        "size": config.patch_size,
        "channels": shape[-1],
        "sigma": config.sigma,
        # The paper also certifies at other sigmas than the model was trained with.
        "train_sigma": model["train_sigma"],
        "image_shape": shape,
        "num_classes": num_classes,
        "num_images": config.num_images,
        "saliency": "gradcam" if config.mode == "gradcam" else None,
        "target_radius": job_config.resolve_target(
            config.target_radius, config.patch_size, shape[-1]
        ),
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "model": model,
        "meta": json.loads(json.dumps(meta or {})),
        **_classes_record(source),
    }


def _classes_record(source) -> dict[str, Any]:
    """``{"classes": [...]}`` where the source names its classes, else ``{}``."""
    classes = getattr(source, "classes", None)
    return {} if classes is None else {"classes": [str(c) for c in classes]}


def _certify_images(
    config,
    out_dir,
    source,
    classify,
    num_classes,
    features_and_head,
    process_index,
    process_count,
    progress,
    row_stamp=(),
) -> None:
    # The one definition of a run's images, shared with the row checks.
    selection = rows.selection(config.image_seed, len(source), config.num_images)
    on_disk = rows.all_rows(out_dir)
    done = {row["index"] for row in on_disk}
    mine = [i for i in range(config.num_images) if i % process_count == process_index]
    todo = [i for i in mine if i not in done]
    bar = certify_bar(todo, len(mine), progress)
    finished = [r for r in on_disk if r["index"] in set(mine)]
    if bar is not None and finished:
        bar.set_postfix(running_accuracies(finished), refresh=False)
    try:
        with rows.Writer(rows.shard_path(out_dir, process_index, process_count)) as out:
            step = config.images_per_batch
            for start in range(0, len(todo), step):
                group = todo[start : start + step]
                dataset_indices = [int(selection[i]) for i in group]
                images, labels = source.get_batch(np.array(dataset_indices))
                # Each image's key depends on its data set index alone.
                keys = [
                    jax.random.fold_in(jax.random.key(config.seed), d)
                    for d in dataset_indices
                ]
                new_rows = pipeline.group_rows(
                    config,
                    classify,
                    num_classes,
                    images,
                    labels,
                    keys,
                    features_and_head=features_and_head,
                )
                for index, dataset_index, row in zip(
                    group, dataset_indices, new_rows, strict=True
                ):
                    row = {"index": index, "dataset_index": dataset_index, **row}
                    if hasattr(source, "image_name"):  # ties the row to its file
                        row["image"] = source.image_name(dataset_index)
                    row.update(row_stamp)  # ties the row to its run (run_id)
                    out.append(row)
                    finished.append(row)
                    if bar is not None:
                        # Postfix first: update() redraws, so the bar shows it too.
                        bar.set_postfix(running_accuracies(finished), refresh=False)
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
