"""The row of one image for job mode ``smoothed_double_masking``: the defended
label (three-case inference on masked-noise PREDICTs) and its certificate."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import numpy as np

from mrs_jax.certification._covering_masks import patchcleanser_masks
from mrs_jax.certification._masks import UNRESTRICTED, resolve_target
from mrs_jax.certification._smoothed_double_masking import (
    CERTIFICATE,
    Classifier,
    _defend,
    _problem,
    smoothed_double_masking_certify,
)
from mrs_jax.certification._smoothing import ABSTAIN
from mrs_jax.core import checks as _checks


@functools.lru_cache(maxsize=4)
def _masks(height: int, width: int, patch_size: int, k: int) -> np.ndarray:
    # One mask set for every image of a run.
    return patchcleanser_masks((height, width), patch_size, k)


def smoothed_double_masking_row(
    config: Any, classify: Classifier, num_classes: int, x, label: int, *, key
) -> dict[str, Any]:
    """The row fields of one image for job mode ``smoothed_double_masking``.

    Host driver. The defended label comes from :func:`smoothed_double_masking`
    (``n0`` draws per PREDICT, at ``alpha``) with one half of ``key``; it is
    certified by :func:`smoothed_double_masking_certify` (``n0 = 0``: every
    combination tests that label, no selection draws; ``max_n = config.n``;
    ``futility_alpha = alpha``: a combination stops once its upper bound is
    below the threshold) with the other half, so the certified label does not
    depend on the certification draws.

    Args:
      config: read by attribute: ``patch_size``, ``pc_k`` (masks per axis),
        ``sigma``, ``n0``, ``n``, ``alpha``, ``batch_size``, ``target_radius``
        (None or ``"unrestricted"``: ``s * sqrt(C)``; or an l2 radius).
      classify: ``[B, H, W, C] -> [B, num_classes]`` logits.
      num_classes: K >= 2.
      x: ``[H, W, C]`` float32 clean image in [0, 1].
      label: the true class. Not read: the row certifies its ``prediction``,
        as every mode's row does (certified accuracy counts ``certified`` and
        ``prediction == label``); it keeps the job's call the same for every
        mode.
      key: typed PRNG key for this image.

    Returns:
      ``prediction`` (the defended label, -1 if it abstains), ``certified``,
      ``certificate`` (``"every_patch_position_l2"``), ``radius`` (the target),
      ``p_lower`` (the smallest lower bound over the combinations drawn, None
      when the prediction abstains and nothing is certified), ``num_samples``
      (every draw, inference and certificate), ``case`` (1, 2 or 3),
      ``covered`` (None: no attack was run) and ``seconds``.
    """
    start = time.perf_counter()
    x = _checks.image(x)
    masks = _masks(x.shape[0], x.shape[1], config.patch_size, config.pc_k)
    target = UNRESTRICTED if config.target_radius is None else config.target_radius
    radius = resolve_target(target, config.patch_size, x.shape[-1])
    predict_key, certify_key = jax.random.split(_checks.prng_key(key))
    problem = _problem(
        classify, x, masks, config.sigma, num_classes, config.batch_size, None
    )
    n0 = _checks.positive_int(config.n0, "n0")
    alpha = _checks.probability_level(config.alpha)
    inference = _defend(problem, predict_key, n0, alpha)
    predicted = time.perf_counter()
    certificate = None
    if inference.label != ABSTAIN:
        certificate = smoothed_double_masking_certify(
            classify,
            x,
            inference.label,
            masks,
            config.sigma,
            radius,
            key=certify_key,
            n0=0,  # the defended label is fixed: each combination tests it
            max_n=config.n,
            alpha=alpha,
            num_classes=num_classes,
            batch_size=config.batch_size,
            # A combination whose upper bound falls below the threshold stops:
            # it can no longer certify, and a stop never adds a certificate.
            futility_alpha=alpha,
        )
    done = time.perf_counter()
    return {
        "prediction": inference.label,
        "certified": certificate is not None and certificate.certified,
        "certificate": CERTIFICATE,
        "radius": radius,
        "p_lower": None if certificate is None else certificate.p_lower,
        "num_samples": inference.num_samples
        + (0 if certificate is None else certificate.num_samples),
        "case": inference.case,
        "covered": None,
        "seconds": {"predict": predicted - start, "certify": done - predicted},
    }
