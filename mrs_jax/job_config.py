"""The certification job's settings: :class:`JobConfig` and its checks.

Every field is checked when a config is made, with a message naming the
field; checks that need the data (image size, channels) are in
``mrs_jax.job.validate``. ``mrs_jax.job`` re-exports these names.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mrs_jax import _checks, target_radius
from mrs_jax.adaptive import OBJECTIVES
from mrs_jax.image_pipeline import MODES
from mrs_jax.localize import vote_settings

INPAINT_METHODS = ("telea", "harmonic")


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
    ``double_masking``: ``pc_k`` masks per axis, ``pc_fill`` the hidden pixels'
    value, ``pc_batch_size`` masked images per device program.
    ``synthetic_*``: the made-up data set's shape, classes and size (tests, smoke).
    ``images_per_batch``: images per device program in the modes that batch
    (``mrs_jax.batch_pipeline``: ``clean`` and ``practical``); 1 is
    the image-by-image loop. It changes no row (a resume may change it:
    ``run_dir.EXECUTION_FIELDS``).
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
    pc_k: int = 6
    pc_fill: float = 0.5
    pc_batch_size: int = 256
    synthetic_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_classes: int = 10
    synthetic_examples: int = 64
    images_per_batch: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in (
            "num_images",
            "patch_size",
            "num_locations",
            "stride",
            "localize_batch_size",
            "n0",
            "n",
            "batch_size",
            "adaptive_occlusions",
            "adaptive_noise_draws",
            "pc_k",
            "pc_batch_size",
            "images_per_batch",
        ):
            _checks.positive_int(getattr(self, name), name)
        for name in ("attack_steps", "dilation", "seed", "image_seed"):
            _checks.positive_int(getattr(self, name), name, minimum=0)
        _checks.positive_float(self.sigma, "sigma")
        _checks.positive_float(self.attack_step_size, "attack_step_size")
        _checks.probability_level(self.alpha)
        _checks.one_of(self.adaptive_objective, OBJECTIVES, "adaptive_objective")
        _checks.unit_float(self.pc_fill, "pc_fill")
        _checks.number_or_word(
            self.target_radius, target_radius.UNRESTRICTED, "target_radius"
        )
        if self.mode == "double_masking" and self.target_radius is not None:
            raise ValueError(
                "target_radius does not apply to mode 'double_masking' (its "
                "certificate covers every patch position, with no radius); "
                "leave it None"
            )
        if self.inpaint_method not in INPAINT_METHODS:
            raise ValueError(
                f"inpaint_method must be one of {INPAINT_METHODS}, "
                f"got {self.inpaint_method!r}"
            )
        # The localiser's own checks of m (1..s) and tau (finite, >= 0).
        vote_settings(self.patch_size, stride=self.stride, m=self.m, tau=self.tau)
        if self.tau is not None and self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")


def config_defaults() -> dict[str, Any]:
    """Every field's default, as ``run.json`` records it (tuples as lists).

    A run directory written before a field existed ran with its default, so a
    resume compares a missing field with this (``run_dir.check_resume``).
    """
    defaults = {f.name: f.default for f in dataclasses.fields(JobConfig)}
    return json.loads(json.dumps(defaults))
