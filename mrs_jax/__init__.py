"""mrs-jax: certified patch defence by mask-guided randomized smoothing.

Everything lives in [0, 1] pixel space: images are ``[H, W, C]`` float32 in
[0, 1], and ``sigma`` and certified radii are l2 norms in those units. A
certificate from :func:`certify` covers only perturbations inside its mask.

The package is grouped by the stage each part serves (``data``, ``models``,
``training``, ``localization``, ``certification``, ``attacks``, ``rows``,
``job``, ``report``); this module re-exports the public API of each.
"""

# First, before JAX loads: a program of this project holds a Ctrl-C (_entry.py).
import mrs_jax._entry  # noqa: F401
from mrs_jax.attacks import (
    PatchAttackResult as PatchAttackResult,
    SoftVote as SoftVote,
    VoteAttackResult as VoteAttackResult,
    adaptive_patch_attack as adaptive_patch_attack,
    patch_attack as patch_attack,
    soft_vote as soft_vote,
    vote_patch_attack as vote_patch_attack,
)
from mrs_jax.certification import (
    ABSTAIN as ABSTAIN,
    Certificate as Certificate,
    PatchCleanserResult as PatchCleanserResult,
    Prediction as Prediction,
    TargetCertificate as TargetCertificate,
    certified_radius as certified_radius,
    certify as certify,
    certify_at as certify_at,
    clopper_pearson_lower as clopper_pearson_lower,
    derandomized_smoothing as derandomized_smoothing,
    double_masking as double_masking,
    double_masking_certify as double_masking_certify,
    patch_l2_bound as patch_l2_bound,
    patchcleanser as patchcleanser,
    patchcleanser_masks as patchcleanser_masks,
    predict as predict,
    sample_counts as sample_counts,
    smoothed_double_masking as smoothed_double_masking,
    smoothed_double_masking_certify as smoothed_double_masking_certify,
    square_mask as square_mask,
    two_mask_predictions as two_mask_predictions,
    unrestricted_radius as unrestricted_radius,
)
from mrs_jax.core import (
    use_cpu_cores as use_cpu_cores,
)
from mrs_jax.data import (
    FolderSource as FolderSource,
    dataset_source as dataset_source,
    iterate_batches as iterate_batches,
    load_dataset as load_dataset,
)
from mrs_jax.job import (
    JobConfig as JobConfig,
    run as run_job,
)
from mrs_jax.localization import (
    LocalizeResult as LocalizeResult,
    best_window as best_window,
    gradcam as gradcam,
    input_gradient_saliency as input_gradient_saliency,
    joint_vote as joint_vote,
    localize as localize,
    prediction_map as prediction_map,
    sliding_inpaint as sliding_inpaint,
)
from mrs_jax.models import (
    CifarResNet as CifarResNet,
    ImageNetResNet as ImageNetResNet,
    Normalize as Normalize,
    SmallCNN as SmallCNN,
    WideResNet as WideResNet,
    as_classifier as as_classifier,
    features_and_head as features_and_head,
    fold_batchnorm as fold_batchnorm,
    folded_classifier as folded_classifier,
    get_model as get_model,
    load_classifier as load_classifier,
    model_names as model_names,
)
from mrs_jax.rows import (
    accuracy_curve as accuracy_curve,
    certified_accuracy as certified_accuracy,
    clean_accuracy as clean_accuracy,
    empirical_accuracy as empirical_accuracy,
    mask_covers as mask_covers,
)
from mrs_jax.training import (
    TrainConfig as TrainConfig,
    masked_noise_augment as masked_noise_augment,
    noise_squares_augment as noise_squares_augment,
    occlusion_augment as occlusion_augment,
    random_square_masks as random_square_masks,
    train as train,
)

# The single source of the version: setup.cfg reads it (``attr:``).
__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "Certificate",
    "CifarResNet",
    "FolderSource",
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
    "clean_accuracy",
    "clopper_pearson_lower",
    "dataset_source",
    "derandomized_smoothing",
    "double_masking",
    "double_masking_certify",
    "empirical_accuracy",
    "features_and_head",
    "fold_batchnorm",
    "folded_classifier",
    "get_model",
    "gradcam",
    "input_gradient_saliency",
    "iterate_batches",
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
