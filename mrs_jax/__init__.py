"""mrs-jax: certified patch defence by mask-guided randomized smoothing.

Everything lives in [0, 1] pixel space: images are ``[H, W, C]`` float32 in
[0, 1], and ``sigma`` and certified radii are l2 norms in those units. A
certificate from :func:`certify` covers only perturbations inside its mask.

The smoothing core is imported eagerly; everything that pulls in Flax, OpenCV,
matplotlib or tensorflow-datasets is resolved on first use, so ``import mrs_jax``
stays fast and works where those are missing.
"""

import importlib

from mrs_jax.bounds import certified_radius, clopper_pearson_lower

# ``localize``, ``gradcam`` and ``double_masking`` name both a submodule and a
# public function. Import them here, after their submodules load, so the package
# attribute is the function (a lazy export would be shadowed by the submodule once
# anything imports it).
from mrs_jax.double_masking import double_masking
from mrs_jax.gradcam import gradcam
from mrs_jax.localize import localize
from mrs_jax.masks import patch_l2_bound, square_mask, unrestricted_radius
from mrs_jax.smoothing import (
    ABSTAIN,
    Certificate,
    Prediction,
    certify,
    predict,
    sample_counts,
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
    "patchcleanser_masks": "mrs_jax.double_masking",
    "double_masking_certify": "mrs_jax.double_masking",
    "two_mask_predictions": "mrs_jax.double_masking",
    "patchcleanser": "mrs_jax.double_masking",
    "PatchCleanserResult": "mrs_jax.double_masking",
    "TrainConfig": "mrs_jax.training",
    "train": "mrs_jax.training",
    "load_classifier": "mrs_jax.checkpoint",
    "JobConfig": "mrs_jax.job",
    "run_job": ("mrs_jax.job", "run"),
    "certify_at": "mrs_jax.sequential",
    "TargetCertificate": "mrs_jax.sequential",
    "certify_batch": "mrs_jax.batched",
    "certify_at_batch": "mrs_jax.batched",
    "patch_attack_batch": "mrs_jax.attacks",
    "localize_batch": "mrs_jax.batched_localize",
}


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'mrs_jax' has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


__all__ = [
    "ABSTAIN",
    "Certificate",
    "Prediction",
    "certified_radius",
    "certify",
    "clopper_pearson_lower",
    "double_masking",
    "gradcam",
    "localize",
    "patch_l2_bound",
    "predict",
    "sample_counts",
    "square_mask",
    "unrestricted_radius",
    *_LAZY,
]
