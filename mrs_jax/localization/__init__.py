"""Localising a patch: inpainting, prediction maps, joint voting and Grad-CAM
(``docs/localization.md``).
"""

from ._gradcam import best_window as best_window
from ._gradcam import gradcam as gradcam
from ._gradcam import input_gradient_saliency as input_gradient_saliency
from ._inpaint import block_positions as block_positions
from ._inpaint import check_block as check_block
from ._inpaint import check_int as check_int
from ._inpaint import grid_shape as grid_shape
from ._inpaint import harmonic_block as harmonic_block
from ._inpaint import harmonic_variant as harmonic_variant
from ._inpaint import sliding_inpaint as sliding_inpaint
from ._inpaint import telea_blocks as telea_blocks
from ._inpaint import to_uint8 as to_uint8
from ._localize import LocalizeResult as LocalizeResult
from ._localize import VoteSettings as VoteSettings
from ._localize import joint_vote as joint_vote
from ._localize import joint_vote_scores as joint_vote_scores
from ._localize import localize as localize
from ._localize import vote_settings as vote_settings
from ._prediction_maps import check_map_settings as check_map_settings
from ._prediction_maps import predicted_labels as predicted_labels
from ._prediction_maps import prediction_map as prediction_map
from ._prediction_maps import refuse_non_finite as refuse_non_finite

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
    "refuse_non_finite",
    "prediction_map",
    "sliding_inpaint",
    "telea_blocks",
    "to_uint8",
    "vote_settings",
]
