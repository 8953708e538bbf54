"""Training base classifiers with noise inside random squares (MRS_SPEC.md s. 7),
and with the ablations of derandomized smoothing (``augmentation="ablation"``).
"""

from ._ablation import (
    ABLATIONS as ABLATIONS,
    ablate as ablate,
    ablation_augment as ablation_augment,
    band_mask as band_mask,
    encode as encode,
    encode_whole as encode_whole,
    num_positions as num_positions,
)
from ._augment import (
    masked_noise_augment as masked_noise_augment,
    noise_squares_augment as noise_squares_augment,
    occlusion_augment as occlusion_augment,
    random_flip_crop as random_flip_crop,
    random_square_masks as random_square_masks,
)
from ._config import (
    TrainConfig as TrainConfig,
    square_augment as square_augment,
)
from ._data import data_sources as data_sources
from ._evaluate import (
    augment as augment,
    evaluate as evaluate,
    tta_logits as tta_logits,
)
from ._optimizer import make_optimizer as make_optimizer
from ._step import make_train_step as make_train_step
from ._train import train as train

__all__ = [
    "ABLATIONS",
    "TrainConfig",
    "ablate",
    "ablation_augment",
    "augment",
    "band_mask",
    "data_sources",
    "encode",
    "encode_whole",
    "evaluate",
    "make_optimizer",
    "make_train_step",
    "masked_noise_augment",
    "noise_squares_augment",
    "num_positions",
    "occlusion_augment",
    "random_flip_crop",
    "random_square_masks",
    "square_augment",
    "train",
    "tta_logits",
]
