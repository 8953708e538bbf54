"""The defence of a group of images: localise, then certify in the located mask.

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

from typing import Any

import jax
import numpy as np

from mrs_jax import certification
from mrs_jax.core import ABSTAIN, LOCALIZATION_OUTCOMES, sharding
from mrs_jax.job._config import JobConfig, resolve_target
from mrs_jax.job._group import Clock, Group
from mrs_jax.localization import localize

# Row values of ``localization``: the localiser's reasons, "ok" said plainly.
LOCALIZATION = dict(
    zip(("ok", "no_change", "multiple_regions"), LOCALIZATION_OUTCOMES, strict=True)
)


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
    group = Group(config, classify, num_classes, images, [0] * len(images), None, {})
    return defend_group(group, images, keys, {} if seconds is None else seconds)


def defend_group(group: Group, images, keys, seconds) -> list[dict[str, Any]]:
    """Localise on every image, then certify inside its located (or tie-break)
    mask; ``multiple_regions`` images abstain without CERTIFY."""
    config = group.config
    with Clock(seconds, "localize"):
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
    with Clock(seconds, "certify"):
        certs = certify_fields(group, images[padded], masks, keys[np.array(padded)])
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


def certify_fields(group: Group, images, masks, keys) -> list[dict[str, Any]]:
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
    return [f | {"mask_box": box(m)} for f, m in zip(fields, masks, strict=True)]


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



def box(mask: np.ndarray) -> list[int]:
    """``[top, left, bottom, right)`` of the mask's bounding box."""
    rows_hit, cols_hit = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [
        int(rows_hit[0]),
        int(cols_hit[0]),
        int(rows_hit[-1]) + 1,
        int(cols_hit[-1]) + 1,
    ]
