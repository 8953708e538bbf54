"""The training augmentation of a batch, and evaluation: clean, noisy and
test-time augmented accuracy on the test split."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from mrs_jax.core import checks as _checks, sharding as placement
from mrs_jax.training._ablation import encode_whole
from mrs_jax.training._augment import random_flip_crop
from mrs_jax.training._config import (
    TrainConfig,
    check_config as _check_config,
    square_augment,
)


class DivergedError(FloatingPointError, ValueError):
    """The loss or the weights stopped being finite: the settings diverge.

    A ``ValueError`` too, so the command line reports it as one line (exit 2).
    """


def augment(
    key: jax.Array,
    images: jax.Array,
    config: TrainConfig,
    flips: jax.Array | None = None,
) -> jax.Array:
    """Flips and crops, then :func:`square_augment`, of ``images: [B, H, W, C]``.

    ``flips: [B]`` bool mirrors the chosen images first (``flip_mode=
    "alternating"``); without it ``flip_crop`` flips at random.
    """
    _check_config(config)
    crop_key, noise_key = jax.random.split(key)
    if flips is not None:
        images = jnp.where(flips[:, None, None, None], images[:, :, ::-1], images)
    if config.flip_crop:
        keys = jax.random.split(crop_key, images.shape[0])
        crop = functools.partial(
            random_flip_crop,
            pad=config.crop_pad,
            flip=flips is None,
            pad_mode=config.crop_pad_mode,
        )
        images = jax.vmap(crop)(keys, images)
    return square_augment(noise_key, images, config)


def clean_view(images: jax.Array, config: TrainConfig) -> jax.Array:
    """What the model sees of a clean batch: the images, or for
    ``augmentation="ablation"`` the whole images encoded (``2C`` channels)."""
    return encode_whole(images) if config.augmentation == "ablation" else images


@functools.lru_cache(maxsize=16)
def _eval_counts(config: TrainConfig) -> Callable:
    """Jitted once per config: ``(classify, images, labels, valid, key) -> hits``."""
    noise_config = dataclasses.replace(config, flip_crop=False)

    @jax.jit
    def counts(classify, images, labels, valid, key):
        noisy = augment(key, images, noise_config)
        # One forward pass over both halves: half the program to compile.
        logits = classify(jnp.concatenate([clean_view(images, config), noisy]))
        predicted = jnp.argmax(logits, -1)
        hits = (predicted == jnp.concatenate([labels, labels])) & jnp.concatenate(
            [valid, valid]
        )
        clean_hits, noisy_hits = jnp.split(hits, 2)
        finite = jnp.all(jnp.isfinite(logits), axis=-1) | ~jnp.concatenate(
            [valid, valid]
        )
        return clean_hits.sum(), noisy_hits.sum(), jnp.all(finite)

    return counts


def tta_logits(classify: Callable, images: jax.Array, tta: str) -> jax.Array:
    """Logits averaged over test-time views of ``images: [B, H, W, C]``.

    ``none``: one view; ``mirror``: the image and its mirror, half each;
    ``mirror_translate``: half that, and a quarter each for the mirrored pair
    shifted one pixel up-left and one down-right (reflected edges): 6 views.
    Evaluation only: a smoothed classifier with it costs 6 forward passes a draw.
    """

    def mirrored(x):
        return 0.5 * classify(x) + 0.5 * classify(x[:, :, ::-1])

    if tta == "none":
        return classify(images)
    logits = mirrored(images)
    if tta == "mirror":
        return logits
    height, width = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left = padded[:, :height, :width]
    down_right = padded[:, 2 : height + 2, 2 : width + 2]
    return 0.5 * logits + 0.25 * (mirrored(up_left) + mirrored(down_right))


@functools.lru_cache(maxsize=4)
def _tta_counts(tta: str, config: TrainConfig) -> Callable:
    @jax.jit
    def counts(classify, images, labels, valid):
        views = tta_logits(classify, clean_view(images, config), tta)
        predicted = jnp.argmax(views, -1)
        return ((predicted == labels) & valid).sum()

    return counts


def evaluate(
    classify, source, config: TrainConfig, mesh: jax.sharding.Mesh, key: jax.Array
) -> dict[str, float]:
    """Clean and noisy accuracy on ``source``, or on ``max_eval_examples`` of it.

    A capped evaluation uses a fixed random subset (seeded by ``config.seed``),
    not the first examples: folder data sets are sorted by class, so the first
    2,000 CIFAR-10 test images are all airplanes and cars (seen: 91.1% on them,
    84.4% on the whole test set).

    Noisy: under :func:`square_augment`, so occluded for ``augmentation="occlusion"``.
    A host driver: the logits are checked to be finite.

    Raises:
        DivergedError: ``classify`` gave a non-finite logit (a diverged model).
    """
    _checks.callable_(classify, "classify")
    _check_config(config)
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    count = len(source)
    chosen = np.arange(count)
    if config.max_eval_examples is not None and config.max_eval_examples < count:
        count = config.max_eval_examples
        order = np.random.default_rng([config.seed, 1]).permutation(len(source))
        chosen = np.sort(order[:count])
    devices = mesh.devices.size
    batch = math.ceil(min(config.eval_batch_size, max(count, 1)) / devices) * devices
    data_sharding = NamedSharding(mesh, P("data"))

    clean = noisy = tta = 0
    finite = True
    for i, start in enumerate(range(0, count, batch)):
        indices = chosen[start : start + batch]
        images, labels = source.get_batch(indices)
        valid = np.arange(batch) < len(indices)
        pad = batch - len(indices)
        images = np.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0)))
        labels = np.pad(labels, (0, pad))
        args = placement.put((images, labels, valid), data_sharding)
        c, n, ok = _eval_counts(config)(classify, *args, jax.random.fold_in(key, i))
        clean += int(c)
        noisy += int(n)
        finite = finite and bool(ok)
        if config.tta != "none":
            tta += int(_tta_counts(config.tta, config)(classify, *args))
    if not finite:
        raise DivergedError("the logits on the evaluation images are not finite")
    scores = {
        "clean_accuracy": clean / max(count, 1),
        "noisy_accuracy": noisy / max(count, 1),
    }
    if config.tta != "none":
        scores["tta_accuracy"] = tta / max(count, 1)
    return scores
