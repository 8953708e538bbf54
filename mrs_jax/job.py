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

Localisation outcome, per row (``localization``; ``clean_localization`` for the
clean pipeline of a practical row): ``located`` (a block changed the
prediction and one region was found), ``no_change`` (no block changed it: the
score map is all zero and its arg max, the tie-break's block, is where CERTIFY
runs, as the paper's algorithm does) or ``multiple_regions`` (abstain, no
CERTIFY). ``prediction`` / ``clean_prediction`` are always the defended
(smoothed) output or ``ABSTAIN`` (-1); ``certified`` / ``clean_certified`` say
that CERTIFY ran and returned that label. The base classifier's own labels are
``base_clean_prediction`` and, under attack, ``undefended_adv_prediction``.
Abstentions count as wrong.

Keys: image ``dataset_index`` uses ``fold_in(key(seed), dataset_index)``, split
into attack, clean-certify and certify keys, so a row does not depend on the
order of images, on the number of processes or on resuming.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mrs_jax import _checks, metrics, rows, run_dir
from mrs_jax.image_pipeline import image_row
from mrs_jax.localize import vote_settings

MODES = ("practical", "center", "gradcam", "clean")
INPAINT_METHODS = ("telea", "harmonic")
RUN_FILE = run_dir.RUN_FILE


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Static settings of a certification run (paper defaults where it has any).

    Data: ``dataset``/``split``/``data_dir`` as in ``mrs_jax.data.dataset_source``;
    ``num_images`` test images drawn without replacement by a permutation seeded
    with ``image_seed``. Attack: ``patch_size`` s, ``num_locations`` K (paper 80),
    ``attack_steps`` and ``attack_step_size`` of sign-gradient PGD. Localisation:
    ``stride``, ``m``, ``tau`` (None: the localiser's defaults), ``dilation``,
    ``inpaint_method``, ``localize_batch_size``. Smoothing: ``sigma`` (l2, [0, 1]
    pixel units), ``n0``, ``n``, ``alpha``, ``batch_size``. ``seed`` roots every key.
    ``synthetic_*``: the made-up data set's shape, classes and size (tests, smoke).
    """

    mode: str = "practical"
    dataset: str = "digits"
    split: str = "test"
    data_dir: str | None = None
    num_images: int = 500
    image_seed: int = 0
    patch_size: int = 5
    num_locations: int = 80
    attack_steps: int = 50
    attack_step_size: float = 0.05
    stride: int = 1
    m: int | None = None
    tau: float | None = None
    dilation: int = 3
    inpaint_method: str = "telea"
    localize_batch_size: int = 256
    sigma: float = 0.5
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch_size: int = 1000
    seed: int = 0
    synthetic_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_classes: int = 10
    synthetic_examples: int = 64

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in (
            "num_images",
            "patch_size",
            "num_locations",
            "stride",
            "localize_batch_size",
            "n0",
            "n",
            "batch_size",
        ):
            _checks.positive_int(getattr(self, name), name)
        for name in ("attack_steps", "dilation", "seed", "image_seed"):
            _checks.positive_int(getattr(self, name), name, minimum=0)
        _checks.positive_float(self.sigma, "sigma")
        _checks.positive_float(self.attack_step_size, "attack_step_size")
        _checks.probability_level(self.alpha)
        if self.inpaint_method not in INPAINT_METHODS:
            raise ValueError(
                f"inpaint_method must be one of {INPAINT_METHODS}, "
                f"got {self.inpaint_method!r}"
            )
        # The localiser's own checks of m (1..s) and tau (finite, >= 0).
        vote_settings(self.patch_size, stride=self.stride, m=self.m, tau=self.tau)
        if self.tau is not None and self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")


Classify = Callable[[jax.Array], jax.Array]
__all__ = ["MODES", "JobConfig", "image_row", "run", "running_accuracies", "validate"]


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
) -> list[dict[str, Any]]:
    """Runs (or resumes) a certification job and returns every row on disk.

    Every input is checked (:func:`validate`) before anything is written. The
    run directory is then held by this process alone (an OS lock; each process
    of a multi-process run holds its own shard), and ``run.json`` records the
    config and the classifier (weights fingerprint, model, training data set,
    image shape, training sigma). Rows already in ``out_dir`` are kept and their
    images skipped; a run directory written with a different config or
    classifier is refused, naming what differs. Process ``process_index`` of
    ``process_count`` takes the images whose position ``i`` in the selection has
    ``i % process_count == process_index``; ``barrier`` (a cross-process
    barrier, e.g. ``multihost_utils.sync_global_devices``) is called before
    process 0 merges the shards into ``rows.jsonl``.

    Args:
      config: the run's settings.
      out_dir: run directory (``run.json``, ``rows.jsonl``).
      classify: the base classifier, ``[B, H, W, C] -> [B, num_classes]`` logits;
        a pytree (``as_classifier``) so its weights can be fingerprinted.
      num_classes: K.
      features_and_head: ``(features_fn, head_fn)`` split of the model for
        Grad-CAM; required by mode ``gradcam``.
      meta: the checkpoint's facts (``model``, ``dataset``, ``image_shape``,
        ``sigma``: training sigma), checked against the job's data and
        recorded in ``run.json``.
      process_index, process_count: this process's share of the images.
      progress: show a tqdm bar with running accuracies.
      barrier: called with a name before merging when ``process_count > 1``.

    Raises:
      ValueError, TypeError: a bad input (see :func:`validate`) or a run
        directory holding another config or classifier.
      runlock.LockedError: another process holds the run directory.
    """
    _checks.callable_(classify, "classify")
    process_count = _checks.positive_int(process_count, "process_count")
    process_index = _checks.positive_int(process_index, "process_index", minimum=0)
    if process_index >= process_count:
        raise ValueError(
            f"process_index must be < process_count={process_count}, "
            f"got {process_index}"
        )
    source = validate(
        config,
        out_dir,
        num_classes=num_classes,
        meta=meta,
        features_and_head=features_and_head,
    )
    record = _run_record(config, source, num_classes, classify, meta)
    run_dir.check_resume(Path(out_dir), record)  # before anything is written

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_dir.hold(out_dir, process_index, process_count):
        # Checked again under the lock: another process may have started it.
        run_dir.check_resume(out_dir, record)
        if process_index == 0 and run_dir.read_run_file(out_dir) is None:
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
        )
        if process_count > 1:
            if barrier is not None:
                barrier("mrs_jax.job.rows")
            if process_index == 0:
                rows.merge(out_dir)
    return rows.all_rows(out_dir)


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
    source = _source(config)
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
        run_dir.check_model_fits(meta, config.dataset, shape)
    if config.mode == "gradcam" and num_classes is not None:
        if features_and_head is None:
            raise ValueError(
                "mode 'gradcam' needs the model's features/head split "
                "(features_and_head) and this classifier has none; use mode "
                "'center' or a model with features() and head"
            )
        if len(features_and_head) != 2:
            raise TypeError("features_and_head must be (features_fn, head_fn)")
        for fn, name in zip(features_and_head, ("features_fn", "head_fn")):
            _checks.callable_(fn, name)
    return source


def _run_record(config, source, num_classes, classify, meta) -> dict[str, Any]:
    shape = [int(v) for v in source.image_shape]
    model = run_dir.model_record(classify, meta)
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
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "model": model,
        "meta": json.loads(json.dumps(meta or {})),
    }


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
) -> None:
    selection = np.random.default_rng(config.image_seed).permutation(len(source))
    selection = selection[: config.num_images]
    on_disk = rows.all_rows(out_dir)
    done = {row["index"] for row in on_disk}
    mine = [i for i in range(config.num_images) if i % process_count == process_index]
    todo = [i for i in mine if i not in done]
    bar = _progress_bar(todo, len(mine), progress)
    finished = [r for r in on_disk if r["index"] in set(mine)]
    if bar is not None and finished:
        bar.set_postfix(running_accuracies(finished), refresh=False)
    try:
        with rows.Writer(rows.shard_path(out_dir, process_index, process_count)) as out:
            for index in todo:
                dataset_index = int(selection[index])
                images, labels = source.get_batch(np.array([dataset_index]))
                row = image_row(
                    config,
                    classify,
                    num_classes,
                    images[0],
                    int(labels[0]),
                    key=jax.random.fold_in(jax.random.key(config.seed), dataset_index),
                    features_and_head=features_and_head,
                )
                row = {"index": index, "dataset_index": dataset_index, **row}
                out.append(row)
                finished.append(row)
                if bar is not None:
                    # Postfix first: update() redraws, so the bar shows this row too.
                    bar.set_postfix(running_accuracies(finished), refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def running_accuracies(finished: list[dict[str, Any]]) -> dict[str, str]:
    """Clean / empirical / certified (R = 0) accuracy of the rows so far."""
    if not finished:
        return {}
    return {
        "clean": f"{metrics.clean_accuracy(finished):.1%}",
        "empirical": f"{metrics.empirical_accuracy(finished):.1%}",
        "certified": f"{metrics.certified_accuracy(finished, 0.0):.1%}",
    }


def _source(config: JobConfig):
    synthetic = config.dataset == "synthetic"
    return _cached_source(
        config.dataset,
        config.split,
        config.data_dir,
        tuple(config.synthetic_shape) if synthetic else None,
        config.synthetic_classes if synthetic else None,
        config.synthetic_examples if synthetic else None,
        config.image_seed if synthetic else None,
    )


@functools.lru_cache(maxsize=2)
def _cached_source(dataset, split, data_dir, shape, classes, examples, seed):
    # validate() and run() read the same data: load it once.
    from mrs_jax.data import dataset_source

    kwargs: dict[str, Any] = {"data_dir": data_dir}
    if dataset == "synthetic":
        kwargs.update(
            num_examples=examples, image_shape=shape, num_classes=classes, seed=seed
        )
    return dataset_source(dataset, split, **kwargs)


def _progress_bar(todo, total, progress):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=total - len(todo), desc="certify", unit="img")
