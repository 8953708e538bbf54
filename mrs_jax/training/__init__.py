"""Training base classifiers with noise inside random squares (MRS_SPEC.md s. 7).
"""

from ._augment import masked_noise_augment as masked_noise_augment
from ._augment import noise_squares_augment as noise_squares_augment
from ._augment import occlusion_augment as occlusion_augment
from ._augment import random_flip_crop as random_flip_crop
from ._augment import random_square_masks as random_square_masks
from ._config import TrainConfig as TrainConfig
from ._config import data_sources as data_sources
from ._config import square_augment as square_augment
from ._train import augment as augment
from ._train import evaluate as evaluate
from ._train import make_optimizer as make_optimizer
from ._train import make_train_step as make_train_step
from ._train import train as train

__all__ = [
    "TrainConfig",
    "augment",
    "data_sources",
    "evaluate",
    "make_optimizer",
    "make_train_step",
    "masked_noise_augment",
    "noise_squares_augment",
    "occlusion_augment",
    "random_flip_crop",
    "random_square_masks",
    "square_augment",
    "train",
]
