"""One test image's result row: attack, localise, certify (``MRS_SPEC.md`` s. 5-6).

:func:`image_row` is what ``mrs_jax.job`` runs per image; the row's fields are
described in ``mrs_jax.job``'s docstring and read by ``mrs_jax.metrics``.

Localisation and ``no_change``. When no block changes the base classifier's
prediction, the joint-voting score map is all zero. The paper's algorithm takes
its arg max all the same and certifies there, so the defence's output (and the
clean accuracy, "the accuracy of the defence") is always the smoothed
classifier's. :func:`tie_break_block` computes the block that arg max picks
with ``mrs_jax.localize``'s tie-break (the maximum nearest the centroid of all
maxima, i.e. the central position), and CERTIFY runs in that block grown by
``dilation``; the row keeps ``localization == "no_change"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from mrs_jax import sharding, smoothing
from mrs_jax.attacks import patch_attack
from mrs_jax.gradcam import best_window, gradcam
from mrs_jax.localize import localize
from mrs_jax.masks import square_mask

if TYPE_CHECKING:
    from mrs_jax.job import JobConfig

Classify = Callable[[jax.Array], jax.Array]
# Row values of ``localization``: the localiser's reasons, "ok" said plainly.
LOCALIZATION = {
    "ok": "located",
    "no_change": "no_change",
    "multiple_regions": "multiple_regions",
}


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
    """The result row of one image (without ``index``).

    Args:
      config: the job's settings (mode, attack, localisation, smoothing).
      classify: the base classifier, ``[B, H, W, C] -> [B, K]`` logits.
      num_classes: K.
      x: ``[H, W, C]`` float32 image in [0, 1].
      label: its true class.
      key: this image's key; split into attack, clean-certify and certify keys.
      features_and_head: the model's split for mode ``gradcam`` (required there).
    """
    attack_key, clean_key, certify_key = jax.random.split(key, 3)
    seconds: dict[str, float] = {}
    row: dict[str, Any] = {"label": label}
    if config.mode in ("center", "gradcam"):
        start = time.perf_counter()
        base = _base_prediction(classify, x)
        top, left = _theoretical_window(config, x, base, features_and_head)
        seconds["window"] = time.perf_counter() - start
        mask = square_mask(x.shape, top, left, config.patch_size)
        result = _certify(config, classify, num_classes, x, mask, certify_key, seconds)
        row.update(result, covered=None, base_clean_prediction=base)
    elif config.mode == "clean":
        base = _base_prediction(classify, x)
        row.update(_defend(config, classify, num_classes, x, clean_key, seconds))
        row.update(covered=None, base_clean_prediction=base)
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
        # The base classifier alone, on the clean and the attacked image.
        base_clean, undefended = (
            int(v) for v in np.argmax(np.asarray(classify(np.stack([x, x_adv]))), -1)
        )
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
            base_clean_prediction=base_clean,
            undefended_adv_prediction=undefended,
            clean_prediction=clean["prediction"],
            clean_radius=clean["radius"],
            clean_certified=clean["certified"],
            clean_localization=clean["localization"],
            clean_abstain_reason=clean["abstain_reason"],
        )
    row["seconds"] = seconds
    return row


def tie_break_block(score_map: np.ndarray, stride: int) -> tuple[int, int]:
    """Pixel top-left of the block the localiser's arg max picks in ``score_map``.

    The maximum nearest the centroid of all maxima (first in row-major order
    among equals), as ``mrs_jax.localize``; on the all-zero map of
    ``no_change`` that is the central position.

    Args:
      score_map: ``[rows, cols]`` joint-voting scores.
      stride: the positions' step in pixels.
    """
    score = np.asarray(score_map, dtype=np.float64)
    if score.ndim != 2 or score.size == 0:
        raise ValueError(f"score_map must be a non-empty 2-D map, got {score.shape}")
    rows, cols = np.nonzero(score == score.max())
    r0, c0 = rows.mean(), cols.mean()
    best = int(np.argmin((rows - r0) ** 2 + (cols - c0) ** 2))
    return int(rows[best]) * stride, int(cols[best]) * stride


def _base_prediction(classify, x) -> int:
    return int(np.argmax(np.asarray(classify(x[None]))[0]))


def _defend(config, classify, num_classes, x, key, seconds) -> dict[str, Any]:
    """Localise on ``x``, then certify inside the located (or tie-break) mask."""
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
    outcome = LOCALIZATION[located.reason_name]
    seconds["localize"] = time.perf_counter() - start
    result: dict[str, Any] = {
        "attacked_class": int(located.attacked_class),
        "localization": outcome,
    }
    if outcome == "multiple_regions":
        return result | {
            "located_top_left": None,
            "prediction": smoothing.ABSTAIN,
            "radius": 0.0,
            "p_lower": None,
            "certified": False,
            "mask_box": None,
            "abstain_reason": "multiple_regions",
        }
    if outcome == "no_change":
        top, left = tie_break_block(np.asarray(located.score_map), config.stride)
        mask = _dilated_block(x.shape, top, left, config.patch_size, config.dilation)
        result["located_top_left"] = [top, left]
    else:
        mask = np.asarray(located.mask)
        result["located_top_left"] = [int(v) for v in np.asarray(located.top_left)]
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
        "certified": not abstained,
        "mask_box": _box(mask),
        "abstain_reason": "certify_abstain" if abstained else None,
    }


def _dilated_block(shape, top, left, size, dilation) -> np.ndarray:
    """[H, W] bool: the block grown by ``dilation`` pixels, clipped to the image."""
    height, width = shape[:2]
    mask = np.zeros((height, width), bool)
    mask[
        max(top - dilation, 0) : min(top + size + dilation, height),
        max(left - dilation, 0) : min(left + size + dilation, width),
    ] = True
    return mask


def _theoretical_window(config, x, predicted, features_and_head):
    size = config.patch_size
    if config.mode == "center":
        height, width = x.shape[:2]
        return (height - size) // 2, (width - size) // 2
    if features_and_head is None:  # job.validate refuses this before any row
        raise ValueError("mode 'gradcam' needs features_and_head")
    heatmap = gradcam(*features_and_head, x, predicted)
    return best_window(heatmap, size)


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
