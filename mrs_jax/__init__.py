"""mrs-jax: certified patch defence by mask-guided randomized smoothing.

Everything lives in [0, 1] pixel space: images are ``[H, W, C]`` float32 in
[0, 1], and ``sigma`` and certified radii are l2 norms in those units. A
certificate from :func:`certify` covers only perturbations inside its mask.
"""

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

__all__ = [
    "ABSTAIN",
    "Certificate",
    "Prediction",
    "certified_radius",
    "certify",
    "clopper_pearson_lower",
    "patch_l2_bound",
    "predict",
    "sample_counts",
    "square_mask",
    "unrestricted_radius",
]
