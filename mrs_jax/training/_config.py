"""The static settings of a training run, checked field by field.

:class:`TrainConfig` is what a ``train/configs/*.py`` file returns. Every field is
validated when the config is built, with a message naming the field, so a mistake
in a config file is reported before any data is loaded or anything is written.
``_data.py`` loads the data a config names (:func:`data_sources`).
:func:`square_augment` applies what ``augmentation`` names: MRS's masked noise, or
PatchCleanser's occlusion squares. The whole config is recorded in the work dir's
``model.json``, so that a resume with a different one is refused
(:mod:`mrs_jax.training`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax

from mrs_jax.core import checks as _checks
from mrs_jax.models import check_model_kwargs, model_names
from mrs_jax.training._ablation import ABLATIONS, ablation_augment
from mrs_jax.training._augment import (
    masked_noise_augment,
    noise_squares_augment,
    occlusion_augment,
)

AUGMENTATIONS = ("masked_noise", "occlusion", "noise_squares", "ablation")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static training settings.

    Attributes:
        dataset: a :func:`mrs_jax.data.dataset_source` name.
        data_dir: folder for cifar10 pickles or tensorflow-datasets data.
        model: a :func:`mrs_jax.models.get_model` name.
        model_kwargs: extra model arguments as ``((name, value), ...)``.
        num_classes: K (also used for ``synthetic`` data).
        image_shape: (H, W, C) of ``synthetic`` data.
        synthetic_examples: train-split size of ``synthetic`` data (test: a quarter).
        epochs: number of epochs.
        batch_size: global batch; must divide by the device count.
        learning_rate: peak learning rate.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 weight decay added to the gradient.
        schedule: ``cosine`` (with ``warmup_epochs`` linear warm-up) or ``step``
            (x0.1 at 50% and 75% of training).
        warmup_epochs: linear warm-up length for ``cosine``.
        label_smoothing: weight in [0, 1) moved from the true label's one-hot
            target to the uniform distribution over the K classes (0: plain
            cross-entropy).
        augmentation: what each training image gets after ``flip_crop`` (see
            :func:`square_augment`): ``masked_noise`` (MRS: ``sigma`` noise in one
            square of width ``w_min..w_max``) or ``occlusion`` (PatchCleanser:
            ``occlusion_squares`` squares of side ``occlusion_size`` filled with
            ``occlusion_fill``, no noise; ``sigma`` and the widths are unused)
            or ``noise_squares`` (masked-noise double masking: ``sigma`` noise
            in the union of ``occlusion_squares`` squares of side
            ``occlusion_size``; the widths and ``occlusion_fill`` are unused)
            or ``ablation`` (derandomized smoothing: the image ablated to one
            band of ``ablation_band`` columns, or one block, at a random
            position and encoded to ``2C`` channels, ``mrs_jax.training.encode``;
            the model takes ``in_channels=2C``; clean accuracy is of the whole
            image encoded).
        ablation_band, ablation_mode: the band width ``b`` and ``column`` or
            ``block``, for ``augmentation="ablation"``.
        sigma: noise standard deviation in [0, 1] pixel units.
        w_min, w_max: inclusive range of square widths.
        full_image_noise: noise on the whole image instead of a square
            (``masked_noise`` only).
        occlusion_size: side of the occlusion (or noise) squares: the PatchCleanser mask
            width (9 for 32x32 images, patch 5, k = 6), at most the image side.
        occlusion_squares: occlusion squares per image (2: double masking).
        occlusion_fill: value of occluded pixels, a number or ``[C]`` numbers in
            [0, 1]; the ``fill`` given to :func:`mrs_jax.double_masking`.
        flip_crop: random horizontal flips and random crops of the image padded
            by ``crop_pad`` pixels.
        crop_pad: padding on each side before the random crop (``flip_crop``).
        crop_pad_mode: ``constant`` (zeros) or ``reflect`` padding.
        flip_mode: ``random`` (each image flipped with probability 1/2 every
            step) or ``alternating`` (each image flipped in every other epoch,
            starting from a random half: every image is seen both ways every
            two epochs).
        bias_lr_scale: learning rate multiplier for BatchNorm biases (their
            weight decay is divided by it, so the decay per step is unchanged).
        whiten_examples: training images whose 2x2 patches set the whitening
            layer of a model that has one (``init_whitening``); that layer's
            kernel is then frozen. 0: no whitening from data.
        whiten_augmented: compute the whitening from the training images after
            the training augmentation (noise squares included), not clean.
        whiten_bias_epochs: epochs in which the whitening layer's bias trains
            (None: all).
        ema_start_epoch: from this epoch on, every ``ema_every`` steps the
            weights are replaced by an exponential moving average of themselves
            (lookahead), with decay ``ema_decay ** ema_every * (t / T) **
            ema_power`` at step t of T. None: no averaging.
        ema_every, ema_decay, ema_power: see ``ema_start_epoch``.
        triangle: ``(start, peak, end)`` of the ``triangle`` schedule: the rate
            rises linearly from ``start * learning_rate`` to ``learning_rate``
            at fraction ``peak`` of training, then falls to ``end *
            learning_rate``.
        tta: test-time augmentation reported beside the single-view accuracy
            at evaluation (``tta_accuracy``): ``none``, ``mirror`` (2 views) or
            ``mirror_translate`` (6 views). Evaluation only: never part of a
            classifier that is smoothed.
        max_steps_per_epoch: cap on steps per epoch (smoke runs), or None.
        max_eval_examples: cap on test examples evaluated, or None.
        eval_batch_size: batch for evaluation (rounded up to the device count).
        seed: seeds initialisation, data order and augmentation.
        keep_checkpoints: how many epoch checkpoints orbax keeps.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "small_cnn"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_examples: int = 256
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augmentation: str = "masked_noise"
    sigma: float = 0.5
    w_min: int = 5
    w_max: int = 10
    full_image_noise: bool = False
    occlusion_size: int = 9
    occlusion_squares: int = 2
    occlusion_fill: float | tuple[float, ...] = 0.5
    ablation_band: int = 4
    ablation_mode: str = "column"
    flip_crop: bool = False
    crop_pad: int = 4
    crop_pad_mode: str = "constant"
    flip_mode: str = "random"
    bias_lr_scale: float = 1.0
    whiten_examples: int = 0
    whiten_augmented: bool = False
    whiten_bias_epochs: int | None = None
    ema_start_epoch: int | None = None
    ema_every: int = 5
    ema_decay: float = 0.95
    ema_power: float = 3.0
    triangle: tuple[float, float, float] = (0.2, 0.23, 0.07)
    tta: str = "none"
    max_steps_per_epoch: int | None = None
    max_eval_examples: int | None = None
    eval_batch_size: int = 256
    seed: int = 0
    keep_checkpoints: int = 2

    def __post_init__(self):
        # Normalised in place (frozen), so configs from files are hashable (the
        # jitted step is cached on them) and JSON-recordable in model.json.
        _check_names(self)
        _check_recipe(self)
        _check_data(self)
        _check_numbers(self)
        _check_augmentation(self)


def _check_names(config: TrainConfig) -> None:
    """The str fields, and the model, schedule and augmentation among theirs."""
    for name in (
        "dataset", "model", "schedule", "augmentation", "crop_pad_mode",
        "flip_mode", "tta", "ablation_mode",
    ):  # fmt: skip
        value = getattr(config, name)
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {value!r}")
    for name, allowed in (
        ("model", model_names()),
        ("schedule", SCHEDULES),
        ("augmentation", AUGMENTATIONS),
    ):
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {allowed}; got {getattr(config, name)!r}"
            )


def _check_data(config: TrainConfig) -> None:
    """``data_dir``, ``model_kwargs`` and ``image_shape``, normalised."""
    fix = functools.partial(object.__setattr__, config)
    if config.data_dir is not None:
        if not isinstance(config.data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path or None, got {config.data_dir!r}")
        fix("data_dir", str(config.data_dir))
    fix("model_kwargs", _model_kwargs(config.model_kwargs))
    check_model_kwargs(config.model, dict(config.model_kwargs))
    shape = config.image_shape
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {shape!r}")
    fix("image_shape", tuple(_checks.positive_int(d, "image_shape") for d in shape))


def _check_numbers(config: TrainConfig) -> None:
    """The int, float and bool fields, each in its range."""
    fix = functools.partial(object.__setattr__, config)
    for name in _INT_FIELDS:
        value = getattr(config, name)
        if value is not None or name not in _OPTIONAL_FIELDS:
            fix(name, _checks.positive_int(value, name, _INT_MINIMUM.get(name, 1)))
    fix("seed", _checks.seed(config.seed))
    if config.w_min > config.w_max:
        raise ValueError(f"need w_min <= w_max; got {config.w_min}, {config.w_max}")
    fix("learning_rate", _checks.positive_float(config.learning_rate, "learning_rate"))
    for name in ("momentum", "weight_decay", "warmup_epochs", "sigma"):
        fix(name, _checks.nonnegative_float(getattr(config, name), name))
    if config.momentum >= 1:
        raise ValueError(f"momentum must be < 1, got {config.momentum}")
    smoothing = _checks.nonnegative_float(config.label_smoothing, "label_smoothing")
    if smoothing >= 1:
        raise ValueError(f"label_smoothing must be < 1, got {smoothing}")
    fix("label_smoothing", smoothing)
    for name in ("full_image_noise", "flip_crop", "whiten_augmented"):
        fix(name, _checks.boolean(getattr(config, name), name))


def _check_augmentation(config: TrainConfig) -> None:
    """Settings that only one augmentation reads."""
    if config.full_image_noise and config.augmentation != "masked_noise":
        raise ValueError(
            "full_image_noise=True needs augmentation='masked_noise'; got "
            f"augmentation={config.augmentation!r}"
        )
    object.__setattr__(config, "occlusion_fill", _occlusion_fill(config.occlusion_fill))


SCHEDULES = ("cosine", "step", "triangle")
CHOICES = {
    "crop_pad_mode": ("constant", "reflect"),
    "flip_mode": ("random", "alternating"),
    "tta": ("none", "mirror", "mirror_translate"),
    "ablation_mode": ABLATIONS,
}


def _check_recipe(config: TrainConfig) -> None:
    """Checks (and normalises) the fields of the fast-training recipe."""
    fix = functools.partial(object.__setattr__, config)
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {allowed}; got {getattr(config, name)!r}"
            )
    fix("bias_lr_scale", _checks.positive_float(config.bias_lr_scale, "bias_lr_scale"))
    for name in ("ema_decay", "ema_power"):
        fix(name, _checks.nonnegative_float(getattr(config, name), name))
    if config.ema_decay >= 1:
        raise ValueError(f"ema_decay must be < 1, got {config.ema_decay}")
    triangle = config.triangle
    if not isinstance(triangle, (tuple, list)) or len(triangle) != 3:
        raise ValueError(f"triangle must be (start, peak, end); got {triangle!r}")
    triangle = tuple(_checks.nonnegative_float(v, "triangle") for v in triangle)
    if not 0 < triangle[1] < 1:
        raise ValueError(f"triangle's peak must be in (0, 1); got {triangle[1]}")
    fix("triangle", triangle)


_INT_FIELDS = (
    "num_classes",
    "synthetic_examples",
    "epochs",
    "batch_size",
    "w_min",
    "w_max",
    "occlusion_size",
    "occlusion_squares",
    "max_steps_per_epoch",
    "max_eval_examples",
    "eval_batch_size",
    "seed",
    "keep_checkpoints",
    "crop_pad",
    "whiten_examples",
    "whiten_bias_epochs",
    "ema_start_epoch",
    "ema_every",
    "ablation_band",
)
_INT_MINIMUM = {
    "num_classes": 2, "seed": 0, "crop_pad": 0, "whiten_examples": 0,
    "whiten_bias_epochs": 0, "ema_start_epoch": 0,
}  # fmt: skip
_OPTIONAL_FIELDS = (
    "max_steps_per_epoch",
    "max_eval_examples",
    "whiten_bias_epochs",
    "ema_start_epoch",
)


def _occlusion_fill(fill: Any) -> float | tuple[float, ...]:
    """``occlusion_fill`` as a float or a tuple of floats, each in [0, 1]."""
    name = "occlusion_fill"
    if isinstance(fill, (tuple, list)):
        if not fill:
            raise ValueError(f"{name} must be a number or [C] numbers, got {fill!r}")
        values = tuple(_checks.nonnegative_float(v, name) for v in fill)
    else:
        values = (_checks.nonnegative_float(fill, name),)
    if max(values) > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {fill!r}")
    return values if isinstance(fill, (tuple, list)) else values[0]


def check_config(config: Any) -> None:
    """Refuses anything but a :class:`TrainConfig`, naming what it got."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")


def square_augment(key: jax.Array, images: jax.Array, config: TrainConfig) -> jax.Array:
    """The random squares ``config.augmentation`` names, on ``images: [B, H, W, C]``.

    ``masked_noise``: :func:`mrs_jax.noise.masked_noise_augment` with ``sigma`` in
    one square of width ``w_min..w_max`` (clamped to the image) or the whole image;
    not clipped. ``occlusion``: :func:`mrs_jax.occlusion_augment`, the pixels of
    ``occlusion_squares`` squares of side ``occlusion_size`` set to
    ``occlusion_fill``, no noise. ``noise_squares``:
    :func:`mrs_jax.noise_squares_augment`, ``sigma`` noise in the union of
    ``occlusion_squares`` squares of side ``occlusion_size``, not clipped.
    Jittable (``config`` static).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    if config.augmentation == "occlusion":
        return occlusion_augment(
            key,
            images,
            config.occlusion_size,
            config.occlusion_squares,
            config.occlusion_fill,
        )
    if config.augmentation == "noise_squares":
        return noise_squares_augment(
            key, images, config.sigma, config.occlusion_size, config.occlusion_squares
        )
    if config.augmentation == "ablation":
        return ablation_augment(key, images, config.ablation_band, config.ablation_mode)
    w_max = min(config.w_max, *images.shape[1:3])
    w_min = min(config.w_min, w_max)
    return masked_noise_augment(
        key, images, config.sigma, w_min, w_max, config.full_image_noise
    )


def _model_kwargs(kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """``model_kwargs`` as sorted-as-given ``((name, value), ...)``, lists as tuples."""
    items = kwargs.items() if isinstance(kwargs, dict) else kwargs
    try:
        pairs = [(name, value) for name, value in items]
    except (TypeError, ValueError):
        raise TypeError(
            f"model_kwargs must be ((name, value), ...) or a dict, got {kwargs!r}"
        ) from None
    for name, value in pairs:
        if not isinstance(name, str):
            raise TypeError(f"model_kwargs names must be str, got {name!r}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"model_kwargs[{name!r}] must be JSON-serialisable, got {value!r}"
            ) from None
    return tuple((name, _as_tuples(value)) for name, value in pairs)


def _as_tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
