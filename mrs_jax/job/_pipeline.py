"""The result rows of a group of test images: attack, localise, certify.

:func:`group_rows` is what ``mrs_jax.job`` runs per group of
``images_per_batch`` images, in every mode (``MRS_SPEC.md`` sections 5, 6 and
9); a group of one is the image-by-image job. Each stage runs the group at
once: the attack is the one-image device function ``jax.vmap``-ed over images,
labels and keys; localisation, CERTIFY, ``certify_at``, PatchCleanser and the
smoothed double masking are host drivers that take the batch and run one device
program per step. Every image gets exactly the row it would get alone (same
keys, same draws, same decision rules; ``seconds`` excepted, which is each
phase's time for the group divided by its size). Every field is described
once, in ``mrs_jax.core.ROW_FIELDS``; ``mrs_jax.rows`` reads them.

The defence of one group (localise, then certify) is ``_defence.py``; the
attack of each attacked mode is ``_attacks.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax.certification import (
    derandomized_smoothing,
    encode,
    patchcleanser,
    patchcleanser_masks,
    square_mask,
)
from mrs_jax.core import (
    EVERY_PATCH_POSITION,
)
from mrs_jax.job._attacks import ATTACKS
from mrs_jax.job._config import JobConfig
from mrs_jax.job._defence import certify_fields, defend_group
from mrs_jax.job._group import Classify, Clock, Group, Keys
from mrs_jax.localization import best_window, gradcam

# What a mode's ``certified`` holds for, where it is not the localised
# l2 certificate inside the located mask.
PATCHCLEANSER_CERTIFICATE = EVERY_PATCH_POSITION


def group_rows(
    config: JobConfig,
    classify: Classify,
    num_classes: int,
    images: np.ndarray,
    labels,
    keys,
    *,
    features_and_head: tuple[Classify, Classify] | None = None,
) -> list[dict[str, Any]]:
    """The rows (without ``index`` and ``dataset_index``) of a group of images.

    Args:
      config: the job's settings (mode, attack, localisation, smoothing).
      classify: the base classifier, ``[N, H, W, C] -> [N, K]`` logits.
      num_classes: K.
      images: ``[B, H, W, C]`` float32 in [0, 1].
      labels: ``[B]`` true classes.
      keys: ``[B]`` typed keys (or a list of B keys), one per image; each is
        split into attack, clean-certify and certify keys.
      features_and_head: the model's split for mode ``gradcam`` (required there).
    """
    group, keys = _group_and_keys(
        config, classify, num_classes, images, labels, keys, features_and_head
    )
    fields = _MODE_ROWS[config.mode](group, keys)
    share = {name: value / len(images) for name, value in group.seconds.items()}
    return [
        {"label": y, **row, "seconds": dict(share)}
        for y, row in zip(group.labels, fields, strict=True)
    ]


def attack_group(
    config: JobConfig, classify: Classify, num_classes: int, images, labels, keys
) -> tuple[np.ndarray, list[list[int]]]:
    """The attack of an attacked mode on a group of images, as the job runs it:
    ``(x_adv [B, H, W, C] float32, patch top-lefts [B] as [row, col])``.
    ``keys`` are the images' keys as :func:`group_rows` takes them."""
    if config.mode not in ATTACKS:
        raise ValueError(f"mode {config.mode!r} runs no attack")
    group, keys = _group_and_keys(config, classify, num_classes, images, labels, keys)
    return ATTACKS[config.mode](group, keys.attack)


def _group_and_keys(
    config, classify, num_classes, images, labels, keys, features_and_head=None
) -> tuple[Group, Keys]:
    """The group of images and each image's keys, split as every mode uses them."""
    keys = jnp.stack(list(keys)) if isinstance(keys, (list, tuple)) else keys
    split = jax.vmap(lambda k: jax.random.split(k, 3), out_axes=1)(keys)
    group = Group(
        config, classify, num_classes, np.asarray(images, np.float32),
        [int(y) for y in labels], features_and_head, {},
    )  # fmt: skip
    return group, Keys(*split)


# --- modes ---------------------------------------------------------------


def _window_rows(group: Group, keys: Keys) -> list[dict[str, Any]]:
    """Modes ``center`` / ``gradcam``: CERTIFY in a fixed window, clean image."""
    with Clock(group.seconds, "window"):
        base = _base_predictions(group.classify, group.images)
        corners = _theoretical_windows(group, base)
    size = group.config.patch_size
    masks = np.stack(
        [square_mask(group.images.shape[1:], t, le, size) for t, le in corners]
    )
    with Clock(group.seconds, "certify"):
        results = certify_fields(group, group.images, masks, keys.certify)
    return [
        {**r, "covered": None, "base_clean_prediction": b}
        for r, b in zip(results, base, strict=True)
    ]


def _clean_rows(group: Group, keys: Keys) -> list[dict[str, Any]]:
    """Mode ``clean``: localise and certify on the clean images."""
    base = _base_predictions(group.classify, group.images)
    defended = defend_group(group, group.images, keys.clean, group.seconds)
    return [
        {**d, "covered": None, "base_clean_prediction": b}
        for d, b in zip(defended, base, strict=True)
    ]


def _attacked_rows(group: Group, keys: Keys, *, attack) -> list[dict[str, Any]]:
    """Modes ``practical`` / ``adaptive``: attack, then defend clean and attacked."""
    with Clock(group.seconds, "attack"):
        x_adv, patches = attack(group, keys.attack)
        # The base classifier alone, on the clean and the attacked images.
        base = _base_predictions(
            group.classify, np.concatenate([group.images, x_adv])
        )
    clean_seconds: dict[str, float] = {}
    clean = defend_group(group, group.images, keys.clean, clean_seconds)
    group.seconds["clean"] = sum(clean_seconds.values())
    result = defend_group(group, x_adv, keys.certify, group.seconds)
    count = len(group.images)
    rows = [
        _attacked_fields(
            group.config, result[b], clean[b], patches[b], base[b], base[count + b]
        )
        for b in range(count)
    ]
    if group.config.save_patches:
        size = group.config.patch_size
        for row, image, (r, c) in zip(rows, x_adv, patches, strict=True):
            row["patch"] = image[r : r + size, c : c + size].tolist()
    return rows


def _patchcleanser_rows(group: Group, keys: Keys) -> list[dict[str, Any]]:
    """Mode ``double_masking``: PatchCleanser on the clean images (no key used).

    Its certificate holds for every patch position and content inside the
    image, deterministic (no sampling, no alpha), with no radius (``radius``
    None: ``mrs_jax.metrics`` counts a certified, correct row at every R).
    """
    config = group.config
    with Clock(group.seconds, "patchcleanser"):
        base = _base_predictions(group.classify, group.images)
        masks = _pc_masks(*group.images.shape[1:3], config.patch_size, config.pc_k)
        results = patchcleanser(
            group.classify,
            group.images,
            masks,
            fill=config.pc_fill,
            batch_size=config.pc_batch_size,
        )
    return [
        {
            "prediction": int(r.label),
            "certified": bool(r.certified),
            "certificate": PATCHCLEANSER_CERTIFICATE,
            "radius": None,
            "case": int(r.case),
            "covered": None,
            "base_clean_prediction": int(b),
        }
        for r, b in zip(results, base, strict=True)
    ]


def _drs_rows(group: Group, keys: Keys) -> list[dict[str, Any]]:
    """Mode ``drs``: derandomized smoothing on the clean images (no key used).

    Deterministic, for every patch position and content, no radius.
    """
    config = group.config
    with Clock(group.seconds, "drs"):
        # The base classifier sees the whole image (every pixel kept, encoded).
        whole = jnp.ones(group.images.shape[1:3], bool)
        base = _base_predictions(
            group.classify, jax.vmap(lambda x: encode(x, whole))(group.images)
        )
        results = derandomized_smoothing(
            group.classify,
            group.images,
            config.patch_size,
            config.drs_band,
            mode=config.drs_mode,
            theta=config.drs_theta,
        )
    return [
        {
            "prediction": int(r.label),
            "certified": bool(r.certified),
            "certificate": EVERY_PATCH_POSITION,
            "radius": None,
            "covered": None,
            "votes": [int(v) for v in r.votes],
            "margin": int(r.margin),
            "base_clean_prediction": int(b),
        }
        for r, b in zip(results, base, strict=True)
    ]


def _smoothed_double_masking_rows(group: Group, keys: Keys) -> list[dict]:
    """Mode ``smoothed_double_masking``: the masked-noise double-masking
    certificate (``mrs_jax.smoothed_double_masking``) on the clean images."""
    from mrs_jax import certification as sdm

    rows = []
    with Clock(group.seconds, "smoothed_double_masking"):
        base = _base_predictions(group.classify, group.images)
        for b, (x, y) in enumerate(zip(group.images, group.labels, strict=True)):
            fields = sdm.smoothed_double_masking_row(
                group.config, group.classify, group.num_classes, x, y,
                key=keys.certify[b],
            )
            fields.pop("seconds", None)
            rows.append({**fields, "base_clean_prediction": int(base[b])})
    return rows


# Mode -> row builder: a new mode is one entry here, not a branch elsewhere.
_MODE_ROWS = {
    **{
        mode: functools.partial(_attacked_rows, attack=attack)
        for mode, attack in ATTACKS.items()
    },
    "center": _window_rows,
    "gradcam": _window_rows,
    "clean": _clean_rows,
    "double_masking": _patchcleanser_rows,
    "smoothed_double_masking": _smoothed_double_masking_rows,
    "drs": _drs_rows,
}


# --- small steps ---------------------------------------------------------


def _attacked_fields(config, result, clean, patch, base_clean, undefended):
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


def _base_predictions(classify, images) -> list[int]:
    logits = np.asarray(classify(images))
    if not np.all(np.isfinite(logits)):
        raise ValueError(
            "classify returned non-finite logits (NaN or inf) for a test image; "
            "no label can be taken from them"
        )
    return [int(v) for v in np.argmax(logits, -1)]


def _theoretical_windows(group: Group, predicted: list[int]) -> list[tuple]:
    """Each image's s x s window: the centre, or Grad-CAM's best window for
    the base classifier's predicted class."""
    size = group.config.patch_size
    height, width = group.images.shape[1:3]
    if group.config.mode == "center":
        return [((height - size) // 2, (width - size) // 2)] * len(group.images)
    if group.features_and_head is None:  # job.validate refuses this before any row
        raise ValueError("mode 'gradcam' needs features_and_head")
    features, head = group.features_and_head
    heatmaps = jax.vmap(lambda x, c: gradcam(features, head, x, c))(
        group.images, np.asarray(predicted, np.int32)
    )
    return [best_window(h, size) for h in np.asarray(heatmaps)]


@functools.lru_cache(maxsize=4)
def _pc_masks(height: int, width: int, patch_size: int, k: int) -> np.ndarray:
    # The same mask set for every image of a run: build it once.
    return patchcleanser_masks((height, width), patch_size, k)


def _box_covers(box: list[int], patch: list[int], size: int) -> bool:
    # Located masks are dilated squares, so the box is the mask.
    top, left, bottom, right = box
    return (
        top <= patch[0]
        and left <= patch[1]
        and patch[0] + size <= bottom
        and patch[1] + size <= right
    )


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
    """The row of one image: :func:`group_rows` of a group of one."""
    return group_rows(
        config,
        classify,
        num_classes,
        np.asarray(x, np.float32)[None],
        [label],
        key[None],
        features_and_head=features_and_head,
    )[0]
