"""Result rows of a group of images at once (``JobConfig.images_per_batch``).

:func:`group_rows` gives, for each image of a group, the row
``mrs_jax.image_pipeline.image_row`` gives for it alone (same keys, same
fields and values; ``seconds`` excepted), with B images per device program:

- mode ``clean``: localisation of the group (``localize_batch``), then the
  certify step of every image not abstaining (``certify_batch`` for fixed-n
  CERTIFY, ``certify_at_batch`` with a ``target_radius``).
- mode ``practical``: the attack (``patch_attack_batch``), then both
  defences (on the clean and on the attacked images) as in ``clean``.

Other modes (``adaptive``, whose EOT attack dominates its time, ``center``,
``gradcam``, ``double_masking``) are not batched: the job runs them image by
image whatever ``images_per_batch`` says.

``seconds``: each step's time for the whole group, divided by its size.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from mrs_jax import attacks, batched, target_radius
from mrs_jax.batched_localize import localize_batch, split_results
from mrs_jax.image_pipeline import (
    attacked_fields,
    certificate_fields,
    localize_settings,
    located_fields,
)

BATCHED_MODES = ("clean", "practical")


def group_rows(
    config, classify, num_classes: int, images, labels, keys: list[jax.Array]
) -> list[dict[str, Any]]:
    """The rows (without ``index``) of a group of images.

    Args:
      config: the job's ``JobConfig``; ``mode`` in ``BATCHED_MODES``.
      classify: the base classifier, ``[N, H, W, C] -> [N, K]`` logits.
      num_classes: K.
      images: ``[B, H, W, C]`` float32 in [0, 1].
      labels: ``[B]`` true classes.
      keys: each image's key (as ``image_row``'s ``key``).
    """
    if config.mode not in BATCHED_MODES:
        raise ValueError(f"mode {config.mode!r} is not batched: {BATCHED_MODES}")
    # image_row's split(key, 3) -> (attack, clean, certify), per image.
    attack_keys, clean_keys, certify_keys = jax.vmap(
        lambda k: jax.random.split(k, 3), out_axes=1
    )(jax.numpy.stack(keys))
    seconds: dict[str, float] = {}
    if config.mode == "clean":
        base = _base_predictions(classify, images)
        defended = defend_batch(
            config, classify, num_classes, images, clean_keys, seconds
        )
        rows = [
            {**d, "covered": None, "base_clean_prediction": p}
            for d, p in zip(defended, base, strict=True)
        ]
    else:
        keys = (attack_keys, clean_keys, certify_keys)
        rows = _attacked_rows(
            config, classify, num_classes, images, labels, keys, seconds
        )
    share = {name: value / len(images) for name, value in seconds.items()}
    return [
        {"label": int(y), **row, "seconds": dict(share)}
        for y, row in zip(labels, rows, strict=True)
    ]


def _attacked_rows(config, classify, num_classes, images, labels, keys, seconds):
    """Mode ``practical``: ``image_pipeline._attacked_row`` for every image."""
    attack_keys, clean_keys, certify_keys = keys
    start = time.perf_counter()
    x_adv, patches = _attack(config, classify, images, labels, attack_keys)
    base = _base_predictions(classify, np.concatenate([images, x_adv]))
    seconds["attack"] = time.perf_counter() - start
    clean_seconds: dict[str, float] = {}
    clean = defend_batch(
        config, classify, num_classes, images, clean_keys, clean_seconds
    )
    seconds["clean"] = sum(clean_seconds.values())
    result = defend_batch(config, classify, num_classes, x_adv, certify_keys, seconds)
    count = len(images)
    return [
        attacked_fields(
            config, result[b], clean[b], patches[b], base[b], base[count + b]
        )
        for b in range(count)
    ]


def _base_predictions(classify, images) -> list[int]:
    return [int(v) for v in np.argmax(np.asarray(classify(images)), -1)]


def _attack(config, classify, images, labels, keys):
    """``(x_adv [B, H, W, C] numpy, patch top-lefts as lists of ints)``."""
    adv = attacks.patch_attack_batch(
        classify,
        images,
        np.asarray(labels),
        config.patch_size,
        keys=keys,
        num_locations=config.num_locations,
        steps=config.attack_steps,
        step_size=config.attack_step_size,
    )
    x_adv, top_left = adv.image, adv.top_left
    patches = [[int(v) for v in p] for p in np.asarray(top_left)]
    return np.asarray(x_adv), patches


def defend_batch(config, classify, num_classes, images, keys, seconds) -> list[dict]:
    """``image_pipeline.defend`` for every image: localise, then certify."""
    start = time.perf_counter()
    located = localize_batch(
        classify, images, config.patch_size, **localize_settings(config)
    )
    fields = [
        located_fields(config, r, images.shape[-1]) for r in split_results(located)
    ]
    seconds["localize"] = time.perf_counter() - start
    todo = [b for b, (_, mask) in enumerate(fields) if mask is not None]
    results = [f for f, _ in fields]
    if not todo:
        return results
    start = time.perf_counter()
    # Skipped images are stood in for by the first certified one (its result is
    # dropped), so the group keeps one batch shape: one compiled program.
    padded = todo + todo[:1] * (len(images) - len(todo))
    masks = np.stack([fields[b][1] for b in padded])
    certs = _certify(
        config, classify, num_classes, images[padded], masks, keys[np.array(padded)]
    )
    seconds["certify"] = time.perf_counter() - start
    for b, cert in zip(todo, certs, strict=False):
        results[b] = results[b] | certificate_fields(
            config, cert, fields[b][1], images.shape[-1]
        )
    return results


def _certify(config, classify, num_classes, images, masks, keys):
    common = dict(
        keys=keys,
        n0=config.n0,
        alpha=config.alpha,
        num_classes=num_classes,
        batch_size=config.batch_size,
    )
    if config.target_radius is None:
        return batched.certify_batch(
            classify, images, masks, config.sigma, n=config.n, **common
        )
    radius = target_radius.resolve(
        config.target_radius, config.patch_size, images.shape[-1]
    )
    return batched.certify_at_batch(
        classify, images, masks, config.sigma, radius, max_n=config.n, **common
    )
