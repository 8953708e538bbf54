"""mrs-jax: certified patch defence by mask-guided randomized smoothing.

Everything lives in [0, 1] pixel space: images are ``[H, W, C]`` float32 in
[0, 1], and ``sigma`` and certified radii are l2 norms in those units. A
certificate from :func:`certify` covers only perturbations inside its mask.

The smoothing core is imported eagerly; everything that pulls in Flax, OpenCV,
matplotlib or tensorflow-datasets is resolved on first use, so ``import mrs_jax``
stays fast and works where those are missing. A type checker or IDE sees every
public name through the imports under ``TYPE_CHECKING``.

``localize``, ``gradcam``, ``double_masking`` and ``smoothed_double_masking``
each name a submodule and its main function. The package attribute is the
submodule (``import mrs_jax.localize as L`` binds the module, ``L.joint_vote``
works), and calling it calls the function: ``mrs_jax.localize(classify, x, 5)``
is ``mrs_jax.localize.localize(classify, x, 5)`` (``inspect.signature`` gives
the function's signature). ``from mrs_jax.localize import localize`` is the plain
function.
"""

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING

from mrs_jax.bounds import certified_radius, clopper_pearson_lower
from mrs_jax.masks import patch_l2_bound, square_mask, unrestricted_radius
from mrs_jax.smoothing import (
    ABSTAIN,
    Certificate,
    Prediction,
    certify,
    predict,
    sample_counts,
)

# The single source of the version: setup.cfg reads it (``attr:``).
__version__ = "0.1.0"


# Submodules named like their main function (see the module docstring).
_CALLABLE_MODULES = (
    "double_masking",
    "gradcam",
    "localize",
    "smoothed_double_masking",
)


class _CallableModule(types.ModuleType):
    """A submodule that, called, calls its function of the same name."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(getattr(self, self.__name__.rpartition(".")[2]))


class _Package(types.ModuleType):
    """``mrs_jax`` itself: makes the named submodules callable as they bind."""

    def __setattr__(self, name, value):
        # The import system binds a submodule to its package by setattr once it
        # has loaded, however it was imported (``import mrs_jax.localize``,
        # ``from mrs_jax.localize import x``, a first ``mrs_jax.localize``).
        # Assigning a module's __class__ is Python's documented way to give a
        # module behaviour.
        if name in _CALLABLE_MODULES and isinstance(value, types.ModuleType):
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
for _name in _CALLABLE_MODULES:  # any the imports above have loaded already
    if f"{__name__}.{_name}" in sys.modules:
        setattr(sys.modules[__name__], _name, sys.modules[f"{__name__}.{_name}"])
del _name

if TYPE_CHECKING:
    from mrs_jax.adaptive import adaptive_patch_attack
    from mrs_jax.attacks import PatchAttackResult, patch_attack
    from mrs_jax.checkpoint import load_classifier
    from mrs_jax.data import dataset_source, load_dataset
    from mrs_jax.double_masking import (
        PatchCleanserResult,
        double_masking,
        double_masking_certify,
        patchcleanser,
        patchcleanser_masks,
        two_mask_predictions,
    )
    from mrs_jax.fold import fold_batchnorm, folded_classifier
    from mrs_jax.gradcam import best_window, gradcam, input_gradient_saliency
    from mrs_jax.inpaint import sliding_inpaint
    from mrs_jax.job import JobConfig
    from mrs_jax.job import run as run_job
    from mrs_jax.localize import LocalizeResult, joint_vote, localize
    from mrs_jax.metrics import (
        accuracy_curve,
        certified_accuracy,
        clean_accuracy,
        empirical_accuracy,
        mask_covers,
    )
    from mrs_jax.models import as_classifier, get_model, model_names
    from mrs_jax.noise import (
        masked_noise_augment,
        noise_squares_augment,
        occlusion_augment,
        random_square_masks,
    )
    from mrs_jax.prediction_maps import prediction_map
    from mrs_jax.sequential import TargetCertificate, certify_at
    from mrs_jax.sharding import use_cpu_cores
    from mrs_jax.smoothed_double_masking import (
        smoothed_double_masking,
        smoothed_double_masking_certify,
    )
    from mrs_jax.training import TrainConfig, train
    from mrs_jax.vote_attack import (
        SoftVote,
        VoteAttackResult,
        soft_vote,
        vote_patch_attack,
    )

# Public name -> the module that defines it, imported when first asked for.
_LAZY = {
    "patch_attack": "mrs_jax.attacks",
    "adaptive_patch_attack": "mrs_jax.adaptive",
    "PatchAttackResult": "mrs_jax.attacks",
    "input_gradient_saliency": "mrs_jax.gradcam",
    "best_window": "mrs_jax.gradcam",
    "sliding_inpaint": "mrs_jax.inpaint",
    "prediction_map": "mrs_jax.prediction_maps",
    "joint_vote": "mrs_jax.localize",
    "LocalizeResult": "mrs_jax.localize",
    "empirical_accuracy": "mrs_jax.metrics",
    "clean_accuracy": "mrs_jax.metrics",
    "certified_accuracy": "mrs_jax.metrics",
    "accuracy_curve": "mrs_jax.metrics",
    "mask_covers": "mrs_jax.metrics",
    "get_model": "mrs_jax.models",
    "as_classifier": "mrs_jax.models",
    "folded_classifier": "mrs_jax.fold",
    "fold_batchnorm": "mrs_jax.fold",
    "model_names": "mrs_jax.models",
    "load_dataset": "mrs_jax.data",
    "dataset_source": "mrs_jax.data",
    "masked_noise_augment": "mrs_jax.noise",
    "random_square_masks": "mrs_jax.noise",
    "occlusion_augment": "mrs_jax.noise",
    "noise_squares_augment": "mrs_jax.noise",
    "patchcleanser_masks": "mrs_jax.double_masking",
    "double_masking_certify": "mrs_jax.double_masking",
    "two_mask_predictions": "mrs_jax.double_masking",
    "patchcleanser": "mrs_jax.double_masking",
    "PatchCleanserResult": "mrs_jax.double_masking",
    "smoothed_double_masking_certify": "mrs_jax.smoothed_double_masking",
    "TrainConfig": "mrs_jax.training",
    "train": "mrs_jax.training",
    "load_classifier": "mrs_jax.checkpoint",
    "JobConfig": "mrs_jax.job",
    "run_job": ("mrs_jax.job", "run"),
    "certify_at": "mrs_jax.sequential",
    "TargetCertificate": "mrs_jax.sequential",
    "use_cpu_cores": "mrs_jax.sharding",
    "vote_patch_attack": "mrs_jax.vote_attack",
    "soft_vote": "mrs_jax.vote_attack",
    "VoteAttackResult": "mrs_jax.vote_attack",
    "SoftVote": "mrs_jax.vote_attack",
}


def __getattr__(name):
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attribute)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__():
    return sorted(__all__)


__all__ = [
    "ABSTAIN",
    "Certificate",
    "JobConfig",
    "LocalizeResult",
    "PatchAttackResult",
    "PatchCleanserResult",
    "Prediction",
    "SoftVote",
    "TargetCertificate",
    "TrainConfig",
    "VoteAttackResult",
    "accuracy_curve",
    "adaptive_patch_attack",
    "as_classifier",
    "best_window",
    "certified_accuracy",
    "certified_radius",
    "certify",
    "certify_at",
    "clean_accuracy",
    "clopper_pearson_lower",
    "dataset_source",
    "double_masking",
    "double_masking_certify",
    "empirical_accuracy",
    "fold_batchnorm",
    "folded_classifier",
    "get_model",
    "gradcam",
    "input_gradient_saliency",
    "joint_vote",
    "load_classifier",
    "load_dataset",
    "localize",
    "mask_covers",
    "masked_noise_augment",
    "model_names",
    "occlusion_augment",
    "noise_squares_augment",
    "patch_attack",
    "patch_l2_bound",
    "patchcleanser",
    "patchcleanser_masks",
    "predict",
    "prediction_map",
    "random_square_masks",
    "run_job",
    "sample_counts",
    "sliding_inpaint",
    "soft_vote",
    "smoothed_double_masking",
    "smoothed_double_masking_certify",
    "square_mask",
    "train",
    "two_mask_predictions",
    "unrestricted_radius",
    "use_cpu_cores",
    "vote_patch_attack",
]
