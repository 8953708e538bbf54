"""CERTIFY, ``certify_at`` and the patch attack over a batch of images.

With a few hundred draws per image (``certify_at`` at the "unrestricted"
radius stops after one round of ~60 draws on most images), one image per device
program leaves the device idle and is dominated by dispatch. The functions
here run B images through one program per step (``mrs_jax.batch_counting``):
:func:`certify_batch` (fixed-n CERTIFY) and :func:`certify_at_batch` (estimation
rounds in lockstep), each deciding per image with the per-image function's own
rule (``smoothing.certificate_from_counts``, ``Schedule.stop_reason``). The
attack of B images is ``mrs_jax.attacks.patch_attack_batch``; localisation of B
images is ``mrs_jax.batched_localize.localize_batch``.

Same results as per image. Image ``b`` with key ``keys[b]`` gets exactly what
the per-image function returns with ``key=keys[b]``: the same keys, the same
draw indices, the same noise (see ``batch_counting``), the same decision rule.
So each image's guarantee is the per-image one, unchanged: batching only
changes how the draws are scheduled on the device, never which draws are made
or how they are tested. The one caveat is the float arithmetic of ``classify``
itself, which the per-image functions share: a label can differ only where a
classifier's logits differ between batch sizes (XLA may pick other kernels for
other shapes) at an exact near-tie; the tests check exact equality.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from mrs_jax import _checks, sharding
from mrs_jax.batch_counting import BatchCounter
from mrs_jax.sequential import TargetCertificate, schedule
from mrs_jax.smoothing import (
    ABSTAIN,
    Certificate,
    Classifier,
    certificate_from_counts,
)


def _setup(classify, images, masks, sigma, keys, n0, num_classes, batch_size, mesh):
    """Validated inputs, a counter and ``(select_keys, estimate_keys)``."""
    _checks.callable_(classify, "classify")
    images = _checks.image_batch(images)
    masks = _checks.masks(masks, images.shape)
    sigma = _checks.positive_float(sigma, "sigma")
    keys = _checks.key_batch(keys, len(images))
    n0 = _checks.positive_int(n0, "n0")
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    mesh = sharding.sample_mesh() if mesh is None else mesh
    _checks.mesh_with_axis(mesh, sharding.SAMPLES)
    counter = BatchCounter(
        classify, images, masks, sigma, num_classes=num_classes, mesh=mesh
    )
    # The per-image split(key) -> (select_key, estimate_key), for every image.
    select_keys, estimate_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    return counter, select_keys, estimate_keys, n0, batch_size, mesh


def _chunk(total: int, batch_size: int, mesh: Mesh) -> int:
    """``batch_size`` pairs per device step for runs at least that long, else an
    eighth of it: two compiled programs for every round and the selection, and
    short runs waste less than one small chunk (counts never depend on it)."""
    chunk = batch_size if total >= batch_size else max(1, batch_size // 8)
    return sharding.round_up_to_devices(chunk, mesh)


def _select(counter, select_keys, n0, batch_size, mesh) -> np.ndarray:
    """``[B, K]`` counts of each image's ``n0`` selection draws."""
    count = len(select_keys)
    chunk = _chunk(count * n0, batch_size, mesh)
    return counter.count(
        select_keys, np.zeros(count, np.int64), np.full(count, n0), chunk
    )


def certify_batch(
    classify: Classifier,
    images,
    masks,
    sigma: float,
    *,
    keys: jax.Array,
    n0: int,
    n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    mesh: Mesh | None = None,
) -> list[Certificate]:
    """CERTIFY (``mrs_jax.certify``) for B images at once: two device programs.

    Args:
      classify, sigma, n0, n, alpha, num_classes: as in :func:`mrs_jax.certify`.
      images: ``[B, H, W, C]`` float32 in [0, 1].
      masks: ``[B, H, W]`` bool or {0, 1}; none may be all False.
      keys: ``[B]`` typed keys; image ``b`` uses ``keys[b]``.
      batch_size: (image, draw) pairs per device step, over all images.
      mesh: a mesh with a ``"samples"`` axis; default every device.

    Returns:
      ``certificates[b] == mrs_jax.certify(classify, images[b], masks[b], sigma,
      key=keys[b], ...)`` for every ``b`` (module docstring).
    """
    counter, select_keys, estimate_keys, n0, batch_size, mesh = _setup(
        classify, images, masks, sigma, keys, n0, num_classes, batch_size, mesh
    )
    n = _checks.positive_int(n, "n")
    alpha = _checks.probability_level(alpha)
    selection = _select(counter, select_keys, n0, batch_size, mesh)
    count = len(select_keys)
    chunk = _chunk(count * n, batch_size, mesh)
    estimate = counter.count(
        estimate_keys, np.zeros(count, np.int64), np.full(count, n), chunk
    )
    return [
        certificate_from_counts(selection[b], estimate[b], sigma, alpha)
        for b in range(count)
    ]


def certify_at_batch(
    classify: Classifier,
    images,
    masks,
    sigma: float,
    radius: float,
    *,
    keys: jax.Array,
    n0: int,
    max_n: int,
    alpha: float,
    num_classes: int,
    batch_size: int,
    futility_alpha: float | None = None,
    mesh: Mesh | None = None,
) -> list[TargetCertificate]:
    """``mrs_jax.certify_at`` for B images, the rounds in lockstep.

    One program draws every image's ``n0`` selection draws; then each round of
    :func:`mrs_jax.sequential.schedule` is one program over the images still
    undecided (decided ones draw nothing more). Each image keeps its own
    stopping rule and alpha spending, exactly as ``certify_at``: the schedule
    depends only on ``(radius, sigma, alpha, max_n)``, shared by the batch, and
    each image's round ``r`` counts its own first ``N_r`` estimation draws
    (draw ``i`` from ``fold_in(estimate_key_b, i)``). The per-image guarantee
    (``certify_at``'s docstring: union bound over the pre-set rounds) therefore
    holds for every image as it stands: which other images share the program
    changes neither its draws nor when it stops.

    Args:
      classify, sigma, radius, n0, max_n, alpha, num_classes, futility_alpha:
        as in :func:`mrs_jax.certify_at`.
      images: ``[B, H, W, C]`` float32 in [0, 1].
      masks: ``[B, H, W]`` bool or {0, 1}; none may be all False.
      keys: ``[B]`` typed keys; image ``b`` uses ``keys[b]``.
      batch_size: (image, draw) pairs per device step, over all images.
      mesh: a mesh with a ``"samples"`` axis; default every device.

    Returns:
      ``results[b] == mrs_jax.certify_at(classify, images[b], masks[b], sigma,
      radius, key=keys[b], ...)`` for every ``b``.
    """
    counter, select_keys, estimate_keys, n0, batch_size, mesh = _setup(
        classify, images, masks, sigma, keys, n0, num_classes, batch_size, mesh
    )
    if futility_alpha is not None:
        futility_alpha = _checks.probability_level(futility_alpha, "futility_alpha")
    plan = schedule(radius, sigma, alpha, max_n)
    alpha = _checks.probability_level(alpha)
    selection = _select(counter, select_keys, n0, batch_size, mesh)
    tops = np.argmax(selection, axis=1)
    count = len(tops)
    estimate = np.zeros((count, num_classes), np.int64)
    decided: dict[int, tuple[str, int, float]] = {}  # b -> (reason, round, p)
    drawn = 0
    for r, size in enumerate(plan.sizes):
        active = np.array([b not in decided for b in range(count)])
        nums = np.where(active, size - drawn, 0)
        chunk = _chunk(int(nums.sum()), batch_size, mesh)
        estimate += counter.count(estimate_keys, np.full(count, drawn), nums, chunk)
        drawn = size
        for b in np.flatnonzero(active):
            hits = int(estimate[b, tops[b]])
            reason, p_lower = plan.stop_reason(r, hits, alpha, futility_alpha)
            if reason is not None:
                decided[b] = (reason, r, p_lower)
        if len(decided) == count:
            break
    results = []
    for b in range(count):
        reason, r, p_lower = decided[b]
        certified = reason == "certified"
        top = int(tops[b])
        results.append(
            TargetCertificate(
                label=top if certified else ABSTAIN,
                certified=certified,
                p_lower=p_lower,
                num_samples=n0 + plan.sizes[r],
                selected_label=top,
                rounds=r + 1,
                stop_reason=reason,
                selection_counts=selection[b],
                estimate_counts=estimate[b],
            )
        )
    return results
