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

Localisation and ``no_change``. When no block changes the base classifier's
prediction, the joint-voting score map is all zero. The paper's algorithm takes
its arg max all the same and certifies there, so the defence's output (and the
clean accuracy, "the accuracy of the defence") is always the smoothed
classifier's. ``mrs_jax.localize`` returns the block that arg max picks (its
tie-break: the maximum nearest the centroid of all maxima, i.e. the central
position) as the mask, grown by ``dilation``; CERTIFY runs there and the row
keeps ``localization == "no_change"``.

Certify at a target radius. With ``JobConfig.target_radius`` set, the certify
step asks ``certify_at`` "is the prediction certified at this radius?" with
``max_n = config.n`` instead of running fixed-n CERTIFY, and the row adds
``target_radius`` (resolved), ``certified_at_target`` and ``num_samples`` (every
draw, ``n0`` included). ``prediction`` / ``radius`` / ``p_lower`` /
``certified`` are then what the draws made certify, as CERTIFY would report
them (``p_lower`` is a valid ``1 - alpha`` bound whatever round the draws
stopped at), so a row that stopped early because the target was out of reach
may abstain where fixed-n CERTIFY with ``n`` draws would have returned a small
radius: its ``radius`` is a lower bound, not CERTIFY's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import certification
from mrs_jax.attacks import adaptive_patch_attack, patch_attack, vote_patch_attack
from mrs_jax.certification import (
    derandomized_smoothing,
    encode,
    patchcleanser,
    patchcleanser_masks,
    square_mask,
)
from mrs_jax.core import (
    ABSTAIN,
    EVERY_PATCH_POSITION,
    LOCALIZATION_OUTCOMES,
    sharding,
)
from mrs_jax.job._config import JobConfig, resolve_target
from mrs_jax.localization import best_window, gradcam, localize

Classify = Callable[[jax.Array], jax.Array]
# Row values of ``localization``: the localiser's reasons, "ok" said plainly.
LOCALIZATION = dict(
    zip(("ok", "no_change", "multiple_regions"), LOCALIZATION_OUTCOMES, strict=True)
)
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
    keys = jax.numpy.stack(list(keys)) if isinstance(keys, (list, tuple)) else keys
    split = jax.vmap(lambda k: jax.random.split(k, 3), out_axes=1)(keys)
    group = _Group(
        config,
        classify,
        num_classes,
        np.asarray(images, np.float32),
        [int(y) for y in labels],
        features_and_head,
        {},
    )
    fields = _MODE_ROWS[config.mode](group, _Keys(*split))
    share = {name: value / len(images) for name, value in group.seconds.items()}
    return [
        {"label": y, **row, "seconds": dict(share)}
        for y, row in zip(group.labels, fields, strict=True)
    ]


class _Group(NamedTuple):
    """A group's inputs, shared by the mode row builders; ``seconds`` collects
    each phase's time for the whole group."""

    config: JobConfig
    classify: Classify
    num_classes: int
    images: np.ndarray
    labels: list[int]
    features_and_head: tuple[Classify, Classify] | None
    seconds: dict[str, float]


class _Keys(NamedTuple):
    """Each image's independent keys (``split(key, 3)``, in this order), ``[B]``."""

    attack: jax.Array
    clean: jax.Array
    certify: jax.Array


class _Clock:
    """Adds the time of a ``with`` block to ``seconds[name]``."""

    def __init__(self, seconds: dict[str, float], name: str):
        self.seconds, self.name = seconds, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        elapsed = time.perf_counter() - self.start
        self.seconds[self.name] = self.seconds.get(self.name, 0.0) + elapsed


# --- modes ---------------------------------------------------------------


def _window_rows(group: _Group, keys: _Keys) -> list[dict[str, Any]]:
    """Modes ``center`` / ``gradcam``: CERTIFY in a fixed window, clean image."""
    with _Clock(group.seconds, "window"):
        base = _base_predictions(group.classify, group.images)
        corners = _theoretical_windows(group, base)
    size = group.config.patch_size
    masks = np.stack(
        [square_mask(group.images.shape[1:], t, le, size) for t, le in corners]
    )
    with _Clock(group.seconds, "certify"):
        results = _certify_fields(group, group.images, masks, keys.certify)
    return [
        {**r, "covered": None, "base_clean_prediction": b}
        for r, b in zip(results, base, strict=True)
    ]


def _clean_rows(group: _Group, keys: _Keys) -> list[dict[str, Any]]:
    """Mode ``clean``: localise and certify on the clean images."""
    base = _base_predictions(group.classify, group.images)
    defended = _defend(group, group.images, keys.clean, group.seconds)
    return [
        {**d, "covered": None, "base_clean_prediction": b}
        for d, b in zip(defended, base, strict=True)
    ]


def _attacked_rows(group: _Group, keys: _Keys, *, attack) -> list[dict[str, Any]]:
    """Modes ``practical`` / ``adaptive``: attack, then defend clean and attacked."""
    with _Clock(group.seconds, "attack"):
        x_adv, patches = attack(group, keys.attack)
        # The base classifier alone, on the clean and the attacked images.
        base = _base_predictions(
            group.classify, np.concatenate([group.images, x_adv])
        )
    clean_seconds: dict[str, float] = {}
    clean = _defend(group, group.images, keys.clean, clean_seconds)
    group.seconds["clean"] = sum(clean_seconds.values())
    result = _defend(group, x_adv, keys.certify, group.seconds)
    count = len(group.images)
    return [
        _attacked_fields(
            group.config, result[b], clean[b], patches[b], base[b], base[count + b]
        )
        for b in range(count)
    ]


def _patchcleanser_rows(group: _Group, keys: _Keys) -> list[dict[str, Any]]:
    """Mode ``double_masking``: PatchCleanser on the clean images (no key used).

    Its certificate holds for every patch position and content inside the
    image, deterministic (no sampling, no alpha), with no radius (``radius``
    None: ``mrs_jax.metrics`` counts a certified, correct row at every R).
    """
    config = group.config
    with _Clock(group.seconds, "patchcleanser"):
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


def _drs_rows(group: _Group, keys: _Keys) -> list[dict[str, Any]]:
    """Mode ``drs``: derandomized smoothing on the clean images (no key used).

    Deterministic, for every patch position and content, no radius.
    """
    config = group.config
    with _Clock(group.seconds, "drs"):
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


def _smoothed_double_masking_rows(group: _Group, keys: _Keys) -> list[dict]:
    """Mode ``smoothed_double_masking``: the masked-noise double-masking
    certificate (``mrs_jax.smoothed_double_masking``) on the clean images."""
    from mrs_jax import certification as sdm

    rows = []
    with _Clock(group.seconds, "smoothed_double_masking"):
        base = _base_predictions(group.classify, group.images)
        for b, (x, y) in enumerate(zip(group.images, group.labels, strict=True)):
            fields = sdm.row_fields(
                group.config, group.classify, group.num_classes, x, y,
                key=keys.certify[b],
            )
            fields.pop("seconds", None)
            rows.append({**fields, "base_clean_prediction": int(base[b])})
    return rows


def _budget(config: JobConfig) -> dict[str, Any]:
    """The search budget every attack mode shares (``patch_attack``'s names)."""
    return {
        "num_locations": config.num_locations,
        "steps": config.attack_steps,
        "step_size": config.attack_step_size,
    }


def _standard_attack(group: _Group, keys: jax.Array):
    attack = functools.partial(
        patch_attack, group.classify, size=group.config.patch_size,
        **_budget(group.config),
    )  # fmt: skip
    return _vmapped_attack(group, keys, attack)


def _adaptive_attack(group: _Group, keys: jax.Array):
    # White-box against the job's own defence: its sigma and dilation.
    config = group.config
    attack = functools.partial(
        adaptive_patch_attack,
        group.classify,
        size=config.patch_size,
        objective=config.adaptive_objective,
        sigma=config.sigma,
        dilation=config.dilation,
        num_occlusions=config.adaptive_occlusions,
        num_noise=config.adaptive_noise_draws,
        **_budget(config),
    )
    return _vmapped_attack(group, keys, attack)


def _vote_attack(group: _Group, keys: jax.Array):
    """The vote-aware attack on the whole group (a host driver: its candidates
    are judged by the job's own localiser); returns as ``_vmapped_attack``."""
    config = group.config
    x_adv, top_left = vote_patch_attack(
        group.classify,
        group.images,
        np.asarray(group.labels, np.int32),
        config.patch_size,
        key=keys,
        **_budget(config),
        **localize_settings(config),
    )
    return np.asarray(x_adv), [[int(v) for v in p] for p in np.asarray(top_left)]


def _vmapped_attack(group: _Group, keys: jax.Array, attack):
    """``(x_adv [B, H, W, C] numpy, patch top-lefts as lists of ints)``: the
    one-image attack mapped over images, labels and keys."""
    labels = np.asarray(group.labels, np.int32)
    mapped = jax.vmap(lambda x, y, k: attack(x=x, y=y, key=k))
    x_adv, top_left = mapped(group.images, labels, keys)
    patches = [[int(v) for v in p] for p in np.asarray(top_left)]
    return np.asarray(x_adv), patches


# Mode -> row builder: a new mode is one entry here, not a branch elsewhere.
_MODE_ROWS = {
    "practical": functools.partial(_attacked_rows, attack=_standard_attack),
    "adaptive": functools.partial(_attacked_rows, attack=_adaptive_attack),
    "vote_adaptive": functools.partial(_attacked_rows, attack=_vote_attack),
    "center": _window_rows,
    "gradcam": _window_rows,
    "clean": _clean_rows,
    "double_masking": _patchcleanser_rows,
    "smoothed_double_masking": _smoothed_double_masking_rows,
    "drs": _drs_rows,
}


# --- defence: localise, then certify -------------------------------------


def localize_settings(config: JobConfig) -> dict[str, Any]:
    """The job's keyword arguments for ``localize``."""
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


def defend(
    config: JobConfig, classify, num_classes: int, images, keys, seconds=None
) -> list[dict[str, Any]]:
    """The defence fields of every image of ``images`` ``[B, H, W, C]``
    (localise, then certify) with its certify key ``keys[b]``, as a job's
    clean mode computes them; phase times are added to ``seconds``."""
    images = np.asarray(images, np.float32)
    group = _Group(config, classify, num_classes, images, [0] * len(images), None, {})
    return _defend(group, images, keys, {} if seconds is None else seconds)


def _defend(group: _Group, images, keys, seconds) -> list[dict[str, Any]]:
    """Localise on every image, then certify inside its located (or tie-break)
    mask; ``multiple_regions`` images abstain without CERTIFY."""
    config = group.config
    with _Clock(seconds, "localize"):
        located = localize(
            group.classify, images, config.patch_size, **localize_settings(config)
        )
        # Read on the host inside the clock: localize returns as soon as its
        # device work is queued.
        fields = [_located_fields(config, r, images.shape[-1]) for r in located]
    results = [f for f, _ in fields]
    todo = [b for b, (_, mask) in enumerate(fields) if mask is not None]
    if not todo:
        return results
    # Skipped images are stood in for by the first certified one (its result is
    # dropped), so the group keeps one batch shape: one compiled program.
    padded = todo + todo[:1] * (len(images) - len(todo))
    masks = np.stack([fields[b][1] for b in padded])
    with _Clock(seconds, "certify"):
        certs = _certify_fields(group, images[padded], masks, keys[np.array(padded)])
    for b, cert in zip(todo, certs, strict=False):
        results[b] = results[b] | cert
    return results


def _located_fields(config: JobConfig, located, channels: int):
    """``(fields, mask)`` of one localisation; mask None where CERTIFY is
    skipped (``multiple_regions``: the fields are then the whole defence)."""
    outcome = LOCALIZATION[located.reason_name]
    result: dict[str, Any] = {
        "attacked_class": int(located.attacked_class),
        "localization": outcome,
    }
    if outcome == "multiple_regions":
        return result | _skipped_target_fields(config, channels) | {
            "located_top_left": None,
            "prediction": ABSTAIN,
            "radius": 0.0,
            "p_lower": None,
            "certified": False,
            "mask_box": None,
            "abstain_reason": "multiple_regions",
        }, None
    # On no_change the localiser's mask is the block its tie-break picks.
    result["located_top_left"] = [int(v) for v in np.asarray(located.top_left)]
    return result, np.asarray(located.mask)


def _certify_fields(group: _Group, images, masks, keys) -> list[dict[str, Any]]:
    """The certify step's fields of every image: fixed-n CERTIFY, or
    ``certify_at`` where ``config.target_radius`` is set."""
    config = group.config
    common = dict(
        key=keys,
        n0=config.n0,
        alpha=config.alpha,
        num_classes=group.num_classes,
        batch_size=config.batch_size,
    )
    channels = images.shape[-1]
    target = resolve_target(config.target_radius, config.patch_size, channels)
    if target is None:
        certs = certification.certify(
            group.classify, images, masks, config.sigma, n=config.n, **common
        )
        fields = [_certificate_fields(c) for c in certs]
    else:
        certs = certification.certify_at(
            group.classify, images, masks, config.sigma, target,
            max_n=config.n, **common,
        )
        fields = [_target_fields(config, c, target) for c in certs]
    return [f | {"mask_box": _box(m)} for f, m in zip(fields, masks, strict=True)]


def _certificate_fields(cert: certification.Certificate) -> dict[str, Any]:
    abstained = cert.label == ABSTAIN
    return {
        "prediction": cert.label,
        "radius": cert.radius,
        "p_lower": cert.p_lower,
        "certified": not abstained,
        "abstain_reason": "certify_abstain" if abstained else None,
    }


def _target_fields(config: JobConfig, cert, target: float) -> dict[str, Any]:
    """The row fields of one ``certify_at`` outcome (module docstring)."""
    returned = cert.p_lower > 0.5
    return {
        "prediction": cert.selected_label if returned else ABSTAIN,
        "radius": certification.certified_radius(config.sigma, cert.p_lower),
        "p_lower": float(cert.p_lower),
        "certified": bool(returned),
        "abstain_reason": None if returned else "certify_abstain",
        "target_radius": target,
        "certified_at_target": bool(cert.certified),
        "num_samples": int(cert.num_samples),
    }


def _skipped_target_fields(config: JobConfig, channels: int) -> dict[str, Any]:
    """The target fields of a row whose certify step did not run: empty
    without a target, else not certified and ``num_samples`` None."""
    target = resolve_target(config.target_radius, config.patch_size, channels)
    if target is None:
        return {}
    return {"target_radius": target, "certified_at_target": False, "num_samples": None}


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


def _theoretical_windows(group: _Group, predicted: list[int]) -> list[tuple]:
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
