"""Certificates: Clopper-Pearson bounds, masked counting, CERTIFY / PREDICT,
sequential certification, PatchCleanser and masked-noise double masking.

Derivations and proofs: ``docs/masked_smoothing.md``, ``docs/sequential.md``,
``docs/patchcleanser.md``, ``docs/smoothed_double_masking.md``,
``docs/derandomized_smoothing.md``.
"""

from ._bounds import (
    certified_radius as certified_radius,
    clopper_pearson_lower as clopper_pearson_lower,
    normal_cdf as normal_cdf,
)
from ._counting import (
    CPU_CHUNK_PER_DEVICE as CPU_CHUNK_PER_DEVICE,
    as_pytree as as_pytree,
    chunk_for as chunk_for,
    device_chunk as device_chunk,
    noise_window as noise_window,
    pairs_program as pairs_program,
    sample_counts as sample_counts,
)
from ._covering_masks import patchcleanser_masks as patchcleanser_masks
from ._derandomized import (
    DerandomizedResult as DerandomizedResult,
    certify_votes as certify_votes,
    delta as derandomized_delta,
    derandomized_smoothing as derandomized_smoothing,
    encode as encode,
    votes as derandomized_votes,
)
from ._masks import (
    UNRESTRICTED as UNRESTRICTED,
    patch_l2_bound as patch_l2_bound,
    resolve_target as resolve_target,
    square_mask as square_mask,
    unrestricted_radius as unrestricted_radius,
)
from ._patchcleanser import (
    PatchCleanserResult as PatchCleanserResult,
    double_masking as double_masking,
    double_masking_certify as double_masking_certify,
    patchcleanser as patchcleanser,
    two_mask_predictions as two_mask_predictions,
)
from ._schedule import schedule as schedule
from ._sequential import (
    TargetCertificate as TargetCertificate,
    certify_at as certify_at,
)
from ._smoothed_double_masking import (
    CERTIFICATE as CERTIFICATE,
    smoothed_double_masking as smoothed_double_masking,
    smoothed_double_masking_certify as smoothed_double_masking_certify,
)
from ._smoothed_double_masking_row import (
    smoothed_double_masking_row as smoothed_double_masking_row,
)
from ._smoothing import (
    ABSTAIN as ABSTAIN,
    Certificate as Certificate,
    Prediction as Prediction,
    certify as certify,
    predict as predict,
)

__all__ = [
    "ABSTAIN",
    "CERTIFICATE",
    "CPU_CHUNK_PER_DEVICE",
    "Certificate",
    "DerandomizedResult",
    "PatchCleanserResult",
    "Prediction",
    "TargetCertificate",
    "UNRESTRICTED",
    "as_pytree",
    "certified_radius",
    "certify",
    "certify_at",
    "certify_votes",
    "chunk_for",
    "clopper_pearson_lower",
    "derandomized_delta",
    "derandomized_smoothing",
    "derandomized_votes",
    "device_chunk",
    "double_masking",
    "double_masking_certify",
    "encode",
    "noise_window",
    "normal_cdf",
    "pairs_program",
    "patch_l2_bound",
    "patchcleanser",
    "patchcleanser_masks",
    "predict",
    "resolve_target",
    "sample_counts",
    "schedule",
    "smoothed_double_masking",
    "smoothed_double_masking_certify",
    "smoothed_double_masking_row",
    "square_mask",
    "two_mask_predictions",
    "unrestricted_radius",
]
