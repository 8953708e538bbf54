"""The data a training config names, checked before training starts: labels
within ``num_classes``, the same classes in both splits, augmentation squares
and bands that fit the images, and every image of a folder decodable."""

from __future__ import annotations

import numpy as np

from mrs_jax.data import dataset_source
from mrs_jax.training._config import TrainConfig


def data_sources(config: TrainConfig):
    """The train and test sources ``config`` names, with their labels checked.

    Returns:
        ``(train, test)`` from :func:`mrs_jax.data.dataset_source` (the test split
        of ``imagenet2012`` is ``validation``).

    Raises:
        ValueError: a damaged or unreadable image in a folder split (named:
            every image is decoded once, up front), a label outside
            [0, ``config.num_classes``) in either split
            (training on it gives a NaN loss, not an error), or, for
            ``augmentation="occlusion"``, an ``occlusion_size`` larger than the
            images or an ``occlusion_fill`` with another channel count.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    kwargs = dict(
        data_dir=config.data_dir,
        image_shape=config.image_shape,
        num_classes=config.num_classes,
        seed=config.seed,
    )
    train = dataset_source(
        config.dataset, "train", num_examples=config.synthetic_examples, **kwargs
    )
    test_split = "validation" if config.dataset == "imagenet2012" else "test"
    test = dataset_source(
        config.dataset,
        test_split,
        num_examples=max(1, config.synthetic_examples // 4),
        **kwargs,
    )
    for split, source in (("train", train), (test_split, test)):
        _check_labels(source, f"{config.dataset} {split}", config.num_classes)
        if hasattr(source, "verify"):
            # A damaged file refuses the run up front (3.6 s for CIFAR-10's
            # 50,000 JPEGs on 2 cores), not when its batch comes, maybe an
            # epoch in; nothing is skipped silently.
            source.verify()
    _check_same_classes(train, test, config.dataset, test_split)
    if config.augmentation in ("occlusion", "noise_squares"):
        _check_occlusion(config, tuple(train.image_shape))
    if config.augmentation == "ablation":
        _check_ablation(config, tuple(train.image_shape))
    return train, test


def _check_same_classes(train, test, dataset: str, test_split: str) -> None:
    """Refuses splits whose class folders differ: labels would be misread."""
    names = getattr(train, "classes", None), getattr(test, "classes", None)
    if None in names or list(names[0]) == list(names[1]):
        return
    raise ValueError(
        f"the {dataset} train and {test_split} splits name different classes: "
        f"{list(names[0])} and {list(names[1])} (labels are class folders in "
        "that order)"
    )


def _check_ablation(config: TrainConfig, image_shape: tuple[int, ...]) -> None:
    """Refuses a band that does not fit ``image_shape`` (H, W, C)."""
    height, width, _ = image_shape
    limit = width if config.ablation_mode == "column" else min(height, width)
    if config.ablation_band > limit:
        raise ValueError(
            f"ablation_band={config.ablation_band} exceeds the {height}x{width} "
            f"images' {limit} pixels"
        )


def _check_occlusion(config: TrainConfig, image_shape: tuple[int, ...]) -> None:
    """Refuses occlusion settings that do not fit ``image_shape`` (H, W, C)."""
    height, width, channels = image_shape
    if config.occlusion_size > min(height, width):
        raise ValueError(
            f"occlusion_size={config.occlusion_size} exceeds the {height}x{width} "
            f"{config.dataset} images"
        )
    fill = config.occlusion_fill
    if isinstance(fill, tuple) and len(fill) != channels:
        raise ValueError(
            f"occlusion_fill has {len(fill)} values; the {config.dataset} images "
            f"have {channels} channels"
        )


def _check_labels(source, name: str, num_classes: int) -> None:
    """Refuses labels outside [0, num_classes): training on them gives a NaN loss."""
    labels = getattr(source, "labels", None)
    if labels is None:  # a streamed source: the labels it declares
        values = np.arange(source.num_classes)
    else:
        values = np.unique(np.asarray(labels))
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"the {name} labels include {shown}, outside [0, num_classes="
            f"{num_classes}); the data has labels {values.min()}..{values.max()}: "
            "set num_classes to match the data"
        )
