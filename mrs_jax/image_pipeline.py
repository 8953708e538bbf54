"""One test image's result row: attack, localise, certify (``MRS_SPEC.md`` s. 5-6).

:func:`image_row` is what ``mrs_jax.job`` runs per image; the row's fields are
described in ``mrs_jax.job``'s docstring and read by ``mrs_jax.metrics``. Each
mode is one row builder in ``_MODE_ROWS`` (``MODES`` is its keys): practical
and adaptive share one builder and differ only in the attack; double_masking
is ``mrs_jax.pc_row``; with a ``target_radius`` the certify step is
``mrs_jax.target_radius``'s.

Localisation and ``no_change``. When no block changes the base classifier's
prediction, the joint-voting score map is all zero. The paper's algorithm takes
its arg max all the same and certifies there, so the defence's output (and the
clean accuracy, "the accuracy of the defence") is always the smoothed
classifier's. ``mrs_jax.localize`` returns the block that arg max picks (its
tie-break: the maximum nearest the centroid of all maxima, i.e. the central
position) as the mask, grown by ``dilation``; CERTIFY runs there and the row
keeps ``localization == "no_change"``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from mrs_jax import pc_row, sharding, smoothing, target_radius
from mrs_jax.adaptive import adaptive_patch_attack
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
    keys = _Keys(*jax.random.split(key, 3))
    task = _Task(config, classify, num_classes, x, label, features_and_head, {})
    row = {"label": label, **_MODE_ROWS[config.mode](task, keys)}
    row.setdefault("seconds", task.seconds)
    return row


class _Task(NamedTuple):
    """One image's inputs, shared by the mode row builders."""

    config: JobConfig
    classify: Classify
    num_classes: int
    x: np.ndarray
    label: int
    features_and_head: tuple[Classify, Classify] | None
    seconds: dict[str, float]


class _Keys(NamedTuple):
    """One image's independent keys (``split(key, 3)``, in this order)."""

    attack: jax.Array
    clean: jax.Array
    certify: jax.Array


def _window_row(task: _Task, keys: _Keys) -> dict[str, Any]:
    """Modes ``center`` / ``gradcam``: CERTIFY in a fixed window, clean image."""
    config, x = task.config, task.x
    start = time.perf_counter()
    base = _base_prediction(task.classify, x)
    top, left = _theoretical_window(config, x, base, task.features_and_head)
    task.seconds["window"] = time.perf_counter() - start
    mask = square_mask(x.shape, top, left, config.patch_size)
    result = _certify(
        config, task.classify, task.num_classes, x, mask, keys.certify, task.seconds
    )
    return {**result, "covered": None, "base_clean_prediction": base}


def _clean_row(task: _Task, keys: _Keys) -> dict[str, Any]:
    """Mode ``clean``: localise and certify on the clean image."""
    base = _base_prediction(task.classify, task.x)
    result = defend(
        task.config, task.classify, task.num_classes, task.x, keys.clean, task.seconds
    )
    return {**result, "covered": None, "base_clean_prediction": base}


def _patchcleanser_row(task: _Task, keys: _Keys) -> dict[str, Any]:
    """Mode ``double_masking``: PatchCleanser on the clean image (no key used)."""
    base = _base_prediction(task.classify, task.x)
    return pc_row.patchcleanser_row(task.config, task.classify, task.x, base)


def _standard_attack(task: _Task, key: jax.Array):
    config = task.config
    return patch_attack(
        task.classify,
        task.x,
        task.label,
        config.patch_size,
        key=key,
        num_locations=config.num_locations,
        steps=config.attack_steps,
        step_size=config.attack_step_size,
    )


def _adaptive_attack(task: _Task, key: jax.Array):
    # White-box against the job's own defence: its sigma and dilation.
    config = task.config
    return adaptive_patch_attack(
        task.classify,
        task.x,
        task.label,
        config.patch_size,
        key=key,
        num_locations=config.num_locations,
        steps=config.attack_steps,
        step_size=config.attack_step_size,
        objective=config.adaptive_objective,
        sigma=config.sigma,
        dilation=config.dilation,
        num_occlusions=config.adaptive_occlusions,
        num_noise=config.adaptive_noise_draws,
    )


def _attacked_row(task: _Task, keys: _Keys, *, attack) -> dict[str, Any]:
    """Modes ``practical`` / ``adaptive``: attack, then defend clean and attacked."""
    config, classify, num_classes, x = task[:4]
    seconds = task.seconds
    start = time.perf_counter()
    x_adv, patch = attack(task, keys.attack)
    x_adv, patch = np.asarray(x_adv), [int(v) for v in np.asarray(patch)]
    # The base classifier alone, on the clean and the attacked image.
    base_clean, undefended = (
        int(v) for v in np.argmax(np.asarray(classify(np.stack([x, x_adv]))), -1)
    )
    seconds["attack"] = time.perf_counter() - start
    clean_seconds: dict[str, float] = {}
    clean = defend(config, classify, num_classes, x, keys.clean, clean_seconds)
    seconds["clean"] = sum(clean_seconds.values())
    result = defend(config, classify, num_classes, x_adv, keys.certify, seconds)
    return attacked_fields(config, result, clean, patch, base_clean, undefended)


def attacked_fields(config, result, clean, patch, base_clean, undefended):
    """An attacked row's fields from its two defences (``result`` on ``x_adv``,
    ``clean`` on ``x``), the patch's ``[row, col]`` and the base labels."""
    box = result["mask_box"]
    covered = box is not None and _box_covers(box, patch, config.patch_size)
    # The clean pipeline's fields, prefixed (its target fields too, if any).
    clean_fields = {f"clean_{n}": clean[n] for n in _CLEAN_FIELDS if n in clean}
    return {
        **result,
        "patch_top_left": patch,
        "covered": covered,
        "base_clean_prediction": base_clean,
        "undefended_adv_prediction": undefended,
        **clean_fields,
    }


_CLEAN_FIELDS = (
    "prediction",
    "radius",
    "certified",
    "localization",
    "abstain_reason",
    "certified_at_target",
    "num_samples",
)
# Mode -> row builder: a new mode is one entry here, not a branch in image_row.
_MODE_ROWS = {
    "practical": functools.partial(_attacked_row, attack=_standard_attack),
    "adaptive": functools.partial(_attacked_row, attack=_adaptive_attack),
    "center": _window_row,
    "gradcam": _window_row,
    "clean": _clean_row,
    "double_masking": _patchcleanser_row,
}
MODES = tuple(_MODE_ROWS)


def _base_prediction(classify, x) -> int:
    return int(np.argmax(np.asarray(classify(x[None]))[0]))


def localize_settings(config: JobConfig) -> dict[str, Any]:
    """The job's keyword arguments for ``localize`` / ``localize_batch``."""
    # The harmonic path is one device program: shard its positions like samples.
    harmonic = config.inpaint_method == "harmonic" and jax.local_device_count() > 1
    return {
        "stride": config.stride,
        "m": config.m,
        "tau": config.tau,
        "dilation": config.dilation,
        "method": config.inpaint_method,
        "batch_size": config.localize_batch_size,
        "mesh": sharding.sample_mesh() if harmonic else None,
    }


def defend(config, classify, num_classes, x, key, seconds) -> dict[str, Any]:
    """Localise on ``x``, then certify inside the located (or tie-break) mask."""
    start = time.perf_counter()
    located = localize(classify, x, config.patch_size, **localize_settings(config))
    # Read on the host inside the clock: localize returns as soon as its device
    # work is queued, which once left ~2 s a CIFAR-10 image out of every phase.
    result, mask = located_fields(config, located, x.shape[-1])
    seconds["localize"] = time.perf_counter() - start
    if mask is None:
        return result
    return result | _certify(config, classify, num_classes, x, mask, key, seconds)


def located_fields(config, located, channels: int):
    """``(fields, mask)`` of one localisation; mask None where CERTIFY is
    skipped (``multiple_regions``: the fields are then the whole defence)."""
    outcome = LOCALIZATION[located.reason_name]
    result: dict[str, Any] = {
        "attacked_class": int(located.attacked_class),
        "localization": outcome,
    }
    if outcome == "multiple_regions":
        return result | target_radius.skipped_fields(config, channels) | {
            "located_top_left": None,
            "prediction": smoothing.ABSTAIN,
            "radius": 0.0,
            "p_lower": None,
            "certified": False,
            "mask_box": None,
            "abstain_reason": "multiple_regions",
        }, None
    # On no_change the localiser's mask is the block its tie-break picks.
    result["located_top_left"] = [int(v) for v in np.asarray(located.top_left)]
    return result, np.asarray(located.mask)


def certificate_fields(config, cert, mask, channels: int) -> dict[str, Any]:
    """The certify step's fields from its outcome: a ``TargetCertificate``
    where ``config.target_radius`` is set, else a ``Certificate``."""
    if config.target_radius is not None:
        fields = target_radius.fields(config, cert, channels)
        return {**fields, "mask_box": _box(mask)}
    abstained = cert.label == smoothing.ABSTAIN
    return {
        "prediction": cert.label,
        "radius": cert.radius,
        "p_lower": cert.p_lower,
        "certified": not abstained,
        "mask_box": _box(mask),
        "abstain_reason": "certify_abstain" if abstained else None,
    }


def _certify(config, classify, num_classes, x, mask, key, seconds) -> dict[str, Any]:
    start = time.perf_counter()
    if config.target_radius is not None:
        result = target_radius.certify_fields(
            config, classify, num_classes, x, mask, key
        )
        seconds["certify"] = time.perf_counter() - start
        return {**result, "mask_box": _box(mask)}
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
    return certificate_fields(config, cert, mask, x.shape[-1])


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
