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
  image. Grad-CAM needs a model split into features and head; for a plain
  classifier the input-gradient saliency stands in (``saliency`` in the row).
- ``clean``: the practical pipeline (localise, certify) on clean images only.

When localisation finds no block that changes the prediction (``no_change``),
there is no mask to smooth in: the row's prediction is the base classifier's
(unanimous) label, its radius 0 and ``covered`` False. When it abstains (two
separate regions) the prediction is ``ABSTAIN``. Abstentions count as wrong.

Keys: image ``dataset_index`` uses ``fold_in(key(seed), dataset_index)``, split
into attack, clean-certify and certify keys, so a row does not depend on the
order of images, on the number of processes or on resuming.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mrs_jax import _checks, metrics, rows, sharding, smoothing
from mrs_jax.attacks import patch_attack
from mrs_jax.gradcam import best_window, gradcam, input_gradient_saliency
from mrs_jax.localize import localize
from mrs_jax.masks import square_mask

MODES = ("practical", "center", "gradcam", "clean")
RUN_FILE = "run.json"


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


Classify = Callable[[jax.Array], jax.Array]


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

    Rows already in ``out_dir`` are kept and their images skipped; a run
    directory written with a different config is refused. Process
    ``process_index`` of ``process_count`` takes the images whose position ``i``
    in the selection has ``i % process_count == process_index``; ``barrier`` (a
    cross-process barrier, e.g. ``multihost_utils.sync_global_devices``) is called
    before process 0 merges the shards into ``rows.jsonl``.

    Args:
      config: the run's settings.
      out_dir: run directory (``run.json``, ``rows.jsonl``).
      classify: the base classifier, ``[B, H, W, C] -> [B, num_classes]`` logits.
      num_classes: K.
      features_and_head: optional ``(features_fn, head_fn)`` split of the model
        for Grad-CAM (mode ``gradcam``).
      meta: extra facts recorded in ``run.json`` (checkpoint path, model name).
      process_index, process_count: this process's share of the images.
      progress: show a tqdm bar with running accuracies.
      barrier: called with a name before merging when ``process_count > 1``.
    """
    if not isinstance(config, JobConfig):
        raise TypeError(f"config must be a JobConfig, got {type(config).__name__}")
    _checks.callable_(classify, "classify")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    process_count = _checks.positive_int(process_count, "process_count")
    process_index = _checks.positive_int(process_index, "process_index", minimum=0)
    if process_index >= process_count:
        raise ValueError(
            f"process_index must be < process_count={process_count}, "
            f"got {process_index}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    source = _source(config)
    if config.num_images > len(source):
        raise ValueError(
            f"num_images={config.num_images} exceeds the {len(source)} images of "
            f"{config.dataset}/{config.split}"
        )
    shape = tuple(source.image_shape)
    if source.num_classes != num_classes:
        raise ValueError(
            f"num_classes={num_classes} (the classifier's) does not match the "
            f"{source.num_classes} classes of {config.dataset}"
        )
    _write_or_check_run_file(out_dir, config, shape, num_classes, meta, process_index)
    selection = np.random.default_rng(config.image_seed).permutation(len(source))
    selection = selection[: config.num_images]

    done = {row["index"] for row in rows.all_rows(out_dir)}
    mine = [i for i in range(config.num_images) if i % process_count == process_index]
    todo = [i for i in mine if i not in done]
    bar = _progress_bar(todo, len(mine), progress)
    finished = [r for r in rows.all_rows(out_dir) if r["index"] in set(mine)]
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
                bar.update(1)
                bar.set_postfix(running_accuracies(finished), refresh=False)
    if bar is not None:
        bar.close()
    if process_count > 1:
        if barrier is not None:
            barrier("mrs_jax.job.rows")
        if process_index == 0:
            rows.merge(out_dir)
    return rows.all_rows(out_dir)


def image_row(
    config: JobConfig,
    classify: Classify,
    num_classes: int,
    x: np.ndarray,
    label: int,
    *,
    key: jax.Array,
    features_and_head: tuple[Classify, Classify] | None = None,
) -> dict[str, Any]:
    """The result row of one image (without ``index``); see the module docstring."""
    attack_key, clean_key, certify_key = jax.random.split(key, 3)
    seconds: dict[str, float] = {}
    row: dict[str, Any] = {"label": label}
    if config.mode in ("center", "gradcam"):
        start = time.perf_counter()
        top, left, saliency = _theoretical_window(
            config, classify, x, features_and_head
        )
        seconds["window"] = time.perf_counter() - start
        mask = square_mask(x.shape, top, left, config.patch_size)
        result = _certify(config, classify, num_classes, x, mask, certify_key, seconds)
        row.update(result, covered=None, saliency=saliency)
    elif config.mode == "clean":
        row.update(_defend(config, classify, num_classes, x, clean_key, seconds))
        row["covered"] = None
    else:
        start = time.perf_counter()
        x_adv, patch = patch_attack(
            classify,
            x,
            label,
            config.patch_size,
            key=attack_key,
            num_locations=config.num_locations,
            steps=config.attack_steps,
            step_size=config.attack_step_size,
        )
        x_adv, patch = np.asarray(x_adv), [int(v) for v in np.asarray(patch)]
        undefended = int(np.argmax(np.asarray(classify(x_adv[None]))[0]))
        seconds["attack"] = time.perf_counter() - start
        clean_seconds: dict[str, float] = {}
        clean = _defend(config, classify, num_classes, x, clean_key, clean_seconds)
        seconds["clean"] = sum(clean_seconds.values())
        result = _defend(config, classify, num_classes, x_adv, certify_key, seconds)
        box = result["mask_box"]
        covered = box is not None and _box_covers(box, patch, config.patch_size)
        row.update(
            result,
            patch_top_left=patch,
            covered=covered,
            undefended_adv_prediction=undefended,
            clean_prediction=clean["prediction"],
            clean_radius=clean["radius"],
            clean_abstain_reason=clean["abstain_reason"],
        )
    row["seconds"] = seconds
    return row


def running_accuracies(finished: list[dict[str, Any]]) -> dict[str, str]:
    """Clean / empirical / certified (R = 0) accuracy of the rows so far."""
    if not finished:
        return {}
    return {
        "clean": f"{metrics.clean_accuracy(finished):.1%}",
        "empirical": f"{metrics.empirical_accuracy(finished):.1%}",
        "certified": f"{metrics.certified_accuracy(finished, 0.0):.1%}",
    }


def _defend(config, classify, num_classes, x, key, seconds) -> dict[str, Any]:
    """Localise on ``x``, then certify inside the located mask."""
    start = time.perf_counter()
    # The harmonic path is one device program: shard its positions like samples.
    harmonic = config.inpaint_method == "harmonic" and jax.local_device_count() > 1
    located = localize(
        classify,
        x,
        config.patch_size,
        stride=config.stride,
        m=config.m,
        tau=config.tau,
        dilation=config.dilation,
        method=config.inpaint_method,
        batch_size=config.localize_batch_size,
        mesh=sharding.sample_mesh() if harmonic else None,
    )
    reason = located.reason_name
    seconds["localize"] = time.perf_counter() - start
    result = {
        "attacked_class": int(located.attacked_class),
        "located_top_left": [int(v) for v in np.asarray(located.top_left)],
    }
    if reason == "no_change":
        return result | _uncertified(int(located.attacked_class), "no_change")
    if bool(located.abstain):
        return result | _uncertified(smoothing.ABSTAIN, reason)
    mask = np.asarray(located.mask)
    return result | _certify(config, classify, num_classes, x, mask, key, seconds)


def _certify(config, classify, num_classes, x, mask, key, seconds) -> dict[str, Any]:
    start = time.perf_counter()
    cert = smoothing.certify(
        classify,
        x,
        mask,
        config.sigma,
        key=key,
        n0=config.n0,
        n=config.n,
        alpha=config.alpha,
        num_classes=num_classes,
        batch_size=config.batch_size,
    )
    seconds["certify"] = time.perf_counter() - start
    abstained = cert.label == smoothing.ABSTAIN
    return {
        "prediction": cert.label,
        "radius": cert.radius,
        "p_lower": cert.p_lower,
        "mask_box": _box(mask),
        "abstain_reason": "certify_abstain" if abstained else None,
    }


def _uncertified(prediction: int, reason: str) -> dict[str, Any]:
    return {
        "prediction": prediction,
        "radius": 0.0,
        "p_lower": None,
        "mask_box": None,
        "abstain_reason": reason,
    }


def _theoretical_window(config, classify, x, features_and_head):
    size = config.patch_size
    if config.mode == "center":
        height, width = x.shape[:2]
        return (height - size) // 2, (width - size) // 2, None
    predicted = int(np.argmax(np.asarray(classify(x[None]))[0]))
    if features_and_head is not None:
        heatmap, saliency = gradcam(*features_and_head, x, predicted), "gradcam"
    else:
        heatmap = input_gradient_saliency(classify, x, predicted)
        saliency = "input_gradient"
    top, left = best_window(heatmap, size)
    return top, left, saliency


def _box(mask: np.ndarray) -> list[int]:
    """``[top, left, bottom, right)`` of the mask's bounding box."""
    rows_hit, cols_hit = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [
        int(rows_hit[0]),
        int(cols_hit[0]),
        int(rows_hit[-1]) + 1,
        int(cols_hit[-1]) + 1,
    ]


def _box_covers(box: list[int], patch: list[int], size: int) -> bool:
    # Located masks are dilated squares, so the box is the mask.
    top, left, bottom, right = box
    return (
        top <= patch[0]
        and left <= patch[1]
        and patch[0] + size <= bottom
        and patch[1] + size <= right
    )


def _source(config: JobConfig):
    from mrs_jax.data import dataset_source

    kwargs: dict[str, Any] = {"data_dir": config.data_dir}
    if config.dataset == "synthetic":
        kwargs.update(
            num_examples=config.synthetic_examples,
            image_shape=tuple(config.synthetic_shape),
            num_classes=config.synthetic_classes,
            seed=config.image_seed,
        )
    return dataset_source(config.dataset, config.split, **kwargs)


def _write_or_check_run_file(out_dir, config, shape, num_classes, meta, process_index):
    record = {
        "mode": config.mode,
        "size": config.patch_size,
        "channels": int(shape[-1]),
        "sigma": config.sigma,
        "image_shape": list(shape),
        "num_classes": num_classes,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "meta": meta or {},
    }
    path = out_dir / RUN_FILE
    if path.exists():
        existing = json.loads(path.read_text())
        if existing.get("config") != record["config"]:
            changed = sorted(
                k
                for k in record["config"]
                if existing.get("config", {}).get(k) != record["config"][k]
            )
            raise ValueError(
                f"out_dir {out_dir} holds a run with a different config "
                f"(differs in {changed}); use a new out_dir"
            )
        return
    if process_index == 0:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, path)


def _progress_bar(todo, total, progress):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=total - len(todo), desc="certify", unit="img")
