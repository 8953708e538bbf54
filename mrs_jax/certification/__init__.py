"""Certificates: Clopper-Pearson bounds, masked counting, CERTIFY / PREDICT,
sequential certification, PatchCleanser and masked-noise double masking.

Derivations and proofs: ``docs/masked_smoothing.md``, ``docs/sequential.md``,
``docs/patchcleanser.md``, ``docs/smoothed_double_masking.md``,
``docs/derandomized_smoothing.md``.
"""

from ._bounds import certified_radius as certified_radius
from ._bounds import clopper_pearson_lower as clopper_pearson_lower
from ._bounds import normal_cdf as normal_cdf
from ._counting import CPU_CHUNK_PER_DEVICE as CPU_CHUNK_PER_DEVICE
from ._counting import as_pytree as as_pytree
from ._counting import chunk_for as chunk_for
from ._counting import device_chunk as device_chunk
from ._counting import noise_window as noise_window
from ._counting import pairs_program as pairs_program
from ._counting import sample_counts as sample_counts
from ._derandomized import DerandomizedResult as DerandomizedResult
from ._derandomized import certify_votes as certify_votes
from ._derandomized import delta as derandomized_delta
from ._derandomized import derandomized_smoothing as derandomized_smoothing
from ._derandomized import votes as derandomized_votes
from ._masks import UNRESTRICTED as UNRESTRICTED
from ._masks import patch_l2_bound as patch_l2_bound
from ._masks import resolve_target as resolve_target
from ._masks import square_mask as square_mask
from ._masks import unrestricted_radius as unrestricted_radius
from ._patchcleanser import PatchCleanserResult as PatchCleanserResult
from ._patchcleanser import double_masking as double_masking
from ._patchcleanser import double_masking_certify as double_masking_certify
from ._patchcleanser import patchcleanser as patchcleanser
from ._patchcleanser import patchcleanser_masks as patchcleanser_masks
from ._patchcleanser import two_mask_predictions as two_mask_predictions
from ._sequential import TargetCertificate as TargetCertificate
from ._sequential import certify_at as certify_at
from ._sequential import schedule as schedule
from ._smoothed_double_masking import CERTIFICATE as CERTIFICATE
from ._smoothed_double_masking import row_fields as row_fields
from ._smoothed_double_masking import smoothed_double_masking as smoothed_double_masking
from ._smoothed_double_masking import (
    smoothed_double_masking_certify as smoothed_double_masking_certify,
)
from ._smoothing import ABSTAIN as ABSTAIN
from ._smoothing import Certificate as Certificate
from ._smoothing import Prediction as Prediction
from ._smoothing import certify as certify
from ._smoothing import predict as predict

__all__ = [
    "DerandomizedResult",
    "certify_votes",
    "derandomized_delta",
    "derandomized_smoothing",
    "derandomized_votes",
    "ABSTAIN",
    "CERTIFICATE",
    "CPU_CHUNK_PER_DEVICE",
    "Certificate",
    "PatchCleanserResult",
    "Prediction",
    "TargetCertificate",
    "UNRESTRICTED",
    "as_pytree",
    "certified_radius",
    "certify",
    "certify_at",
    "chunk_for",
    "clopper_pearson_lower",
    "device_chunk",
    "double_masking",
    "double_masking_certify",
    "noise_window",
    "normal_cdf",
    "pairs_program",
    "patch_l2_bound",
    "patchcleanser",
    "patchcleanser_masks",
    "predict",
    "resolve_target",
    "row_fields",
    "sample_counts",
    "schedule",
    "smoothed_double_masking",
    "smoothed_double_masking_certify",
    "square_mask",
    "two_mask_predictions",
    "unrestricted_radius",
]
