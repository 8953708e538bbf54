"""Localising a patch: inpainting, prediction maps, joint voting and Grad-CAM
(``docs/localization.md``).
"""

from ._gradcam import (
    best_window as best_window,
    gradcam as gradcam,
    input_gradient_saliency as input_gradient_saliency,
)
from ._inpaint import (
    block_positions as block_positions,
    check_block as check_block,
    check_int as check_int,
    grid_shape as grid_shape,
    harmonic_block as harmonic_block,
    harmonic_variant as harmonic_variant,
    sliding_inpaint as sliding_inpaint,
    telea_blocks as telea_blocks,
    to_uint8 as to_uint8,
)
from ._joint_vote import (
    VoteSettings as VoteSettings,
    joint_vote as joint_vote,
    joint_vote_scores as joint_vote_scores,
    vote_settings as vote_settings,
)
from ._localize import LocalizeResult as LocalizeResult, localize as localize
from ._prediction_maps import (
    check_map_settings as check_map_settings,
    predicted_labels as predicted_labels,
    prediction_map as prediction_map,
    refuse_non_finite as refuse_non_finite,
)

__all__ = [
    "LocalizeResult",
    "VoteSettings",
    "best_window",
    "block_positions",
    "check_block",
    "check_int",
    "check_map_settings",
    "gradcam",
    "grid_shape",
    "harmonic_block",
    "harmonic_variant",
    "input_gradient_saliency",
    "joint_vote",
    "joint_vote_scores",
    "localize",
    "predicted_labels",
    "prediction_map",
    "refuse_non_finite",
    "sliding_inpaint",
    "telea_blocks",
    "to_uint8",
    "vote_settings",
]
