"""mrs-jax: certified patch defence by mask-guided randomized smoothing.

Everything lives in [0, 1] pixel space: images are ``[H, W, C]`` float32 in
[0, 1], and ``sigma`` and certified radii are l2 norms in those units. A
certificate from :func:`certify` covers only perturbations inside its mask.

The package is grouped by the stage each part serves (``data``, ``models``,
``training``, ``localization``, ``certification``, ``attacks``, ``rows``,
``job``, ``report``); this module re-exports the public API of each.
"""

from mrs_jax.attacks import (
    PatchAttackResult as PatchAttackResult,
)
from mrs_jax.attacks import (
    SoftVote as SoftVote,
)
from mrs_jax.attacks import (
    VoteAttackResult as VoteAttackResult,
)
from mrs_jax.attacks import (
    adaptive_patch_attack as adaptive_patch_attack,
)
from mrs_jax.attacks import (
    patch_attack as patch_attack,
)
from mrs_jax.attacks import (
    soft_vote as soft_vote,
)
from mrs_jax.attacks import (
    vote_patch_attack as vote_patch_attack,
)
from mrs_jax.certification import (
    ABSTAIN as ABSTAIN,
)
from mrs_jax.certification import (
    Certificate as Certificate,
)
from mrs_jax.certification import (
    PatchCleanserResult as PatchCleanserResult,
)
from mrs_jax.certification import (
    Prediction as Prediction,
)
from mrs_jax.certification import (
    TargetCertificate as TargetCertificate,
)
from mrs_jax.certification import (
    certified_radius as certified_radius,
)
from mrs_jax.certification import (
    certify as certify,
)
from mrs_jax.certification import (
    certify_at as certify_at,
    derandomized_smoothing as derandomized_smoothing,
)
from mrs_jax.certification import (
    clopper_pearson_lower as clopper_pearson_lower,
)
from mrs_jax.certification import (
    double_masking as double_masking,
)
from mrs_jax.certification import (
    double_masking_certify as double_masking_certify,
)
from mrs_jax.certification import (
    patch_l2_bound as patch_l2_bound,
)
from mrs_jax.certification import (
    patchcleanser as patchcleanser,
)
from mrs_jax.certification import (
    patchcleanser_masks as patchcleanser_masks,
)
from mrs_jax.certification import (
    predict as predict,
)
from mrs_jax.certification import (
    sample_counts as sample_counts,
)
from mrs_jax.certification import (
    smoothed_double_masking as smoothed_double_masking,
)
from mrs_jax.certification import (
    smoothed_double_masking_certify as smoothed_double_masking_certify,
)
from mrs_jax.certification import (
    square_mask as square_mask,
)
from mrs_jax.certification import (
    two_mask_predictions as two_mask_predictions,
)
from mrs_jax.certification import (
    unrestricted_radius as unrestricted_radius,
)
from mrs_jax.core import (
    use_cpu_cores as use_cpu_cores,
)
from mrs_jax.data import (
    dataset_source as dataset_source,
)
from mrs_jax.data import (
    load_dataset as load_dataset,
)
from mrs_jax.job import (
    JobConfig as JobConfig,
)
from mrs_jax.job import (
    run as run_job,
)
from mrs_jax.localization import (
    LocalizeResult as LocalizeResult,
)
from mrs_jax.localization import (
    best_window as best_window,
)
from mrs_jax.localization import (
    gradcam as gradcam,
)
from mrs_jax.localization import (
    input_gradient_saliency as input_gradient_saliency,
)
from mrs_jax.localization import (
    joint_vote as joint_vote,
)
from mrs_jax.localization import (
    localize as localize,
)
from mrs_jax.localization import (
    prediction_map as prediction_map,
)
from mrs_jax.localization import (
    sliding_inpaint as sliding_inpaint,
)
from mrs_jax.models import (
    CifarResNet as CifarResNet,
)
from mrs_jax.models import (
    ImageNetResNet as ImageNetResNet,
)
from mrs_jax.models import (
    Normalize as Normalize,
)
from mrs_jax.models import (
    SmallCNN as SmallCNN,
)
from mrs_jax.models import (
    WideResNet as WideResNet,
)
from mrs_jax.models import (
    as_classifier as as_classifier,
)
from mrs_jax.models import (
    features_and_head as features_and_head,
)
from mrs_jax.models import (
    fold_batchnorm as fold_batchnorm,
)
from mrs_jax.models import (
    folded_classifier as folded_classifier,
)
from mrs_jax.models import (
    get_model as get_model,
)
from mrs_jax.models import (
    load_classifier as load_classifier,
)
from mrs_jax.models import (
    model_names as model_names,
)
from mrs_jax.rows import (
    accuracy_curve as accuracy_curve,
)
from mrs_jax.rows import (
    certified_accuracy as certified_accuracy,
)
from mrs_jax.rows import (
    clean_accuracy as clean_accuracy,
)
from mrs_jax.rows import (
    empirical_accuracy as empirical_accuracy,
)
from mrs_jax.rows import (
    mask_covers as mask_covers,
)
from mrs_jax.training import (
    TrainConfig as TrainConfig,
)
from mrs_jax.training import (
    masked_noise_augment as masked_noise_augment,
)
from mrs_jax.training import (
    noise_squares_augment as noise_squares_augment,
)
from mrs_jax.training import (
    occlusion_augment as occlusion_augment,
)
from mrs_jax.training import (
    random_square_masks as random_square_masks,
)
from mrs_jax.training import (
    train as train,
)

# The single source of the version: setup.cfg reads it (``attr:``).
__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "Certificate",
    "CifarResNet",
    "ImageNetResNet",
    "JobConfig",
    "LocalizeResult",
    "Normalize",
    "PatchAttackResult",
    "PatchCleanserResult",
    "Prediction",
    "SmallCNN",
    "SoftVote",
    "TargetCertificate",
    "TrainConfig",
    "VoteAttackResult",
    "WideResNet",
    "accuracy_curve",
    "adaptive_patch_attack",
    "as_classifier",
    "best_window",
    "certified_accuracy",
    "certified_radius",
    "certify",
    "certify_at",
    "derandomized_smoothing",
    "clean_accuracy",
    "clopper_pearson_lower",
    "dataset_source",
    "double_masking",
    "double_masking_certify",
    "empirical_accuracy",
    "features_and_head",
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
    "noise_squares_augment",
    "occlusion_augment",
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
    "smoothed_double_masking",
    "smoothed_double_masking_certify",
    "soft_vote",
    "square_mask",
    "train",
    "two_mask_predictions",
    "unrestricted_radius",
    "use_cpu_cores",
    "vote_patch_attack",
]
