"""The certification job's settings: :class:`JobConfig` and its checks.

Every field is checked when a config is made, with a message naming the
field; checks that need the data (image size, channels) are in
``mrs_jax.job.validate``. ``mrs_jax.job`` re-exports these names. This module
sits below everything that reads a config (``mrs_jax.pipeline``,
``mrs_jax.job``): it imports no job module.

``target_radius`` (:func:`resolve_target`): None (fixed-n CERTIFY), an l2 radius
>= 0, or ``"unrestricted"``: ``patch_l2_bound(s, C) = s * sqrt(C)``, the largest
l2 norm any ``s x s`` patch can have, so a certificate there holds against every
possible patch inside the mask.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mrs_jax import certification as sequential
from mrs_jax.attacks import GOALS, OBJECTIVES
from mrs_jax.certification import UNRESTRICTED, resolve_target
from mrs_jax.core import MAX_DRAWS, MODES, checks as _checks
from mrs_jax.localization import vote_settings

INPAINT_METHODS = ("telea", "harmonic")
# Who judges the vote-aware attack's candidates (mode ``vote_adaptive``).
VOTE_JUDGES = ("defence", "localizer")

# The made-up data set of tests and smoke runs: at most this many pixels.
MAX_SYNTHETIC_VALUES = 2**27


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Static settings of a certification run (paper defaults where it has any).

    Data: ``dataset``/``split``/``data_dir`` as in ``mrs_jax.data.dataset_source``;
    ``num_images`` test images drawn without replacement by a permutation seeded
    with ``image_seed``. Attack: ``patch_size`` s, ``num_locations`` K (paper 80),
    ``attack_steps`` and ``attack_step_size`` of sign-gradient PGD. Localisation:
    ``stride``, ``m``, ``tau`` (None: the localiser's defaults), ``dilation``,
    ``inpaint_method``, ``localize_batch_size``. Smoothing: ``sigma`` (l2, [0, 1]
    pixel units), ``n0``, ``n``, ``alpha``, ``batch_size``. ``seed`` roots every key.
    ``target_radius``: None (fixed-n CERTIFY), an l2 radius >= 0, or
    ``"unrestricted"`` (``s * sqrt(C)``): certify at that radius with
    ``certify_at``, ``max_n = n``. Mode ``adaptive``: ``num_locations``,
    ``attack_steps``, ``attack_step_size`` are its budget; ``adaptive_objective``
    (default: the attack's own), ``adaptive_occlusions`` and
    ``adaptive_noise_draws`` its EOT samples per location and step. Mode
    ``vote_adaptive``: ``vote_goal`` (``"untargeted"`` or ``"targeted"`` at the
    best wrong class) and ``vote_judge``: ``"defence"`` judges the attack's
    candidates by the deployed defence (localise, then PREDICT with ``n0``
    draws), ``"localizer"`` by the localiser and the base classifier alone (the
    first version of the attack). Attacked modes: ``save_patches`` adds each
    patch's pixels to its row (``patch``), so that the attacked image can be
    rebuilt from the data set and the row alone. Mode
    ``double_masking``: ``pc_k`` masks per axis, ``pc_fill`` the hidden pixels'
    value, ``pc_batch_size`` masked images per device program. Mode ``drs``
    (derandomized smoothing, ``mrs_jax.derandomized_smoothing``): ``drs_band``
    columns (or block side) ``b``, ``drs_mode`` ``column`` or ``block``,
    ``drs_theta`` the softmax threshold of a vote; the classifier takes the
    encoded ``[H, W, 2C]`` ablations.
    ``synthetic_*``: the made-up data set's shape, classes and size (tests, smoke).
    Mode ``smoothed_double_masking``: ``pc_k`` masks per axis, the noise
    ``sigma``, ``n0``, ``n`` (the most draws per mask pair), ``alpha`` for the
    whole certificate, and ``target_radius`` (None: ``"unrestricted"``).
    ``images_per_batch``: images per device program, in every mode
    (``mrs_jax.pipeline``); 1 is the image-by-image loop. It changes no row (a
    resume may change it: ``job._record.EXECUTION_FIELDS``).
    """

    mode: str = "practical"
    dataset: str = "digits"
    split: str = "test"
    data_dir: str | None = None
    num_images: int = 500
    image_seed: int = 0
    patch_size: int = 5
    num_locations: int = 80
    attack_steps: int = 50
    attack_step_size: float = 0.05
    stride: int = 1
    m: int | None = None
    tau: float | None = None
    dilation: int = 3
    inpaint_method: str = "telea"
    localize_batch_size: int = 256
    sigma: float = 0.5
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch_size: int = 1000
    seed: int = 0
    target_radius: float | str | None = None
    adaptive_objective: str = "eot_noise"
    adaptive_occlusions: int = 8
    adaptive_noise_draws: int = 4
    vote_goal: str = "untargeted"
    vote_judge: str = "defence"
    save_patches: bool = False
    pc_k: int = 6
    pc_fill: float = 0.5
    pc_batch_size: int = 256
    drs_band: int = 4
    drs_mode: str = "column"
    drs_theta: float = 0.0
    synthetic_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_classes: int = 10
    synthetic_examples: int = 64
    images_per_batch: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _check_counts(self)
        _check_numbers(self)
        _check_synthetic(self)
        _check_certificate(self)
        _check_localizer(self)


_POSITIVE_INTS = (
    "num_images", "patch_size", "num_locations", "stride", "localize_batch_size",
    "n0", "n", "batch_size", "adaptive_occlusions", "adaptive_noise_draws", "pc_k",
    "pc_batch_size", "images_per_batch", "drs_band",
)  # fmt: skip


def _check_counts(config: JobConfig) -> None:
    """The int fields: sizes and counts >= 1, steps and dilation >= 0, seeds,
    and draws within the device's int32 indices."""
    for name in _POSITIVE_INTS:
        _checks.positive_int(getattr(config, name), name)
    for name in ("attack_steps", "dilation"):
        _checks.positive_int(getattr(config, name), name, minimum=0)
    for name in ("seed", "image_seed"):
        _checks.seed(getattr(config, name), name)
    for name in ("n0", "n"):
        if getattr(config, name) > MAX_DRAWS:
            raise ValueError(
                f"{name} must be <= 2**31 - 1 = {MAX_DRAWS} (draw indices "
                f"are int32 on the device), got {getattr(config, name)}"
            )


def _check_numbers(config: JobConfig) -> None:
    """The float and choice fields. Stored as Python floats (a numpy or jax
    scalar is accepted), so that run.json records plain numbers."""
    _set(config, "sigma", _checks.positive_float(config.sigma, "sigma"))
    step = _checks.positive_float(config.attack_step_size, "attack_step_size")
    _set(config, "attack_step_size", step)
    _set(config, "alpha", _checks.probability_level(config.alpha))
    _checks.one_of(config.adaptive_objective, OBJECTIVES, "adaptive_objective")
    _checks.one_of(config.vote_goal, GOALS, "vote_goal")
    _checks.one_of(config.vote_judge, VOTE_JUDGES, "vote_judge")
    _set(config, "save_patches", _checks.boolean(config.save_patches, "save_patches"))
    _set(config, "pc_fill", _checks.unit_float(config.pc_fill, "pc_fill"))
    _checks.number_or_word(config.target_radius, UNRESTRICTED, "target_radius")
    _checks.one_of(config.drs_mode, ("column", "block"), "drs_mode")
    theta = _checks.nonnegative_float(config.drs_theta, "drs_theta")
    if theta >= 1:
        raise ValueError(f"drs_theta must be < 1, got {theta}")
    _set(config, "drs_theta", theta)


def _check_certificate(config: JobConfig) -> None:
    """A target radius where the mode's certificate has one, none elsewhere."""
    if config.mode == "smoothed_double_masking" and config.target_radius is None:
        # Its certificate is always at a radius: by default every content.
        _set(config, "target_radius", UNRESTRICTED)
    if config.mode in ("double_masking", "drs") and config.target_radius is not None:
        raise ValueError(
            f"target_radius does not apply to mode {config.mode!r} (its "
            "certificate covers every patch position, with no radius); "
            "leave it None"
        )


def _check_localizer(config: JobConfig) -> None:
    """The inpainting method, and the localiser's own checks of m (1..s) and
    tau (finite, >= 0)."""
    if config.inpaint_method not in INPAINT_METHODS:
        raise ValueError(
            f"inpaint_method must be one of {INPAINT_METHODS}, "
            f"got {config.inpaint_method!r}"
        )
    vote_settings(config.patch_size, stride=config.stride, m=config.m, tau=config.tau)
    if config.tau is not None and config.tau < 0:
        raise ValueError(f"tau must be >= 0, got {config.tau}")


def _set(config: JobConfig, name: str, value) -> None:
    object.__setattr__(config, name, value)  # a frozen dataclass's own checks


def _check_synthetic(config: JobConfig) -> None:
    """``synthetic_*``: an ``(H, W, C)`` shape of ints >= 1 (C 1 or 3), >= 2
    classes, and a data set small enough to make in memory."""
    shape = config.synthetic_shape
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"synthetic_shape must be (H, W, C), got {shape!r}")
    for value in shape:
        _checks.positive_int(value, "synthetic_shape")
    if shape[2] not in (1, 3):
        raise ValueError(f"synthetic_shape must have 1 or 3 channels, got {shape!r}")
    _checks.positive_int(config.synthetic_classes, "synthetic_classes", minimum=2)
    _checks.positive_int(config.synthetic_examples, "synthetic_examples")
    values = config.synthetic_examples * shape[0] * shape[1] * shape[2]
    if values > MAX_SYNTHETIC_VALUES:
        raise ValueError(
            f"synthetic_examples x synthetic_shape = {values:,} pixel values, "
            f"more than the {MAX_SYNTHETIC_VALUES:,} a made-up data set may hold"
        )


def check_reachable(config: JobConfig, channels: int) -> float | None:
    """Refuses a target that ``n`` draws cannot certify; returns the radius.

    Raises:
      ValueError: naming ``target_radius``, with what it resolved to.
    """
    radius = resolve_target(config.target_radius, config.patch_size, channels)
    if radius is None:
        return None
    try:
        sequential.schedule(radius, config.sigma, config.alpha, config.n)
    except ValueError as error:
        raise ValueError(
            f"target_radius={config.target_radius!r} (l2 radius {radius:.4g}) "
            f"cannot be certified with n={config.n} at sigma={config.sigma:g}, "
            f"alpha={config.alpha:g}: {error}"
        ) from None
    return radius


def config_defaults() -> dict[str, Any]:
    """Every field's default, as ``run.json`` records it (tuples as lists).

    A run directory written before a field existed ran with its default, so a
    resume compares a missing field with this (``job._resume.check_resume``).
    """
    defaults = {f.name: f.default for f in dataclasses.fields(JobConfig)}
    return json.loads(json.dumps(defaults))
