"""Base classifiers (Flax NNX) with mean/std normalisation as their first layer,
their checkpoints and BatchNorm folding.
"""

from ._checkpoint import (
    METRICS_JSONL as METRICS_JSONL,
    append_metrics_row as append_metrics_row,
    check_resume as check_resume,
    check_workdir as check_workdir,
    checkpoint_manager as checkpoint_manager,
    json_normal as json_normal,
    latest_epoch as latest_epoch,
    read_metrics as read_metrics,
    restore_intact as restore_intact,
    save_checkpoint as save_checkpoint,
    set_aside as set_aside,
    write_model_meta as write_model_meta,
)
from ._classifier import (
    as_classifier as as_classifier,
    classifier_from_split as classifier_from_split,
    features_and_head as features_and_head,
)
from ._fingerprint import (
    checkpoint_fingerprint as checkpoint_fingerprint,
    classifier_fingerprint as classifier_fingerprint,
    weights_fingerprint as weights_fingerprint,
)
from ._fold import (
    fold_batchnorm as fold_batchnorm,
    folded_classifier as folded_classifier,
)
from ._load import (
    checkpoint_classifier as checkpoint_classifier,
    load_classifier as load_classifier,
    load_model as load_model,
    load_warm_start as load_warm_start,
)
from ._normalize import Normalize as Normalize
from ._registry import (
    check_model_kwargs as check_model_kwargs,
    get_model as get_model,
    model_names as model_names,
)
from ._resnet_cifar import CifarResNet as CifarResNet
from ._resnet_imagenet import ImageNetResNet as ImageNetResNet
from ._small_cnn import SmallCNN as SmallCNN
from ._wide_resnet import WideResNet as WideResNet

__all__ = [
    "CifarResNet",
    "ImageNetResNet",
    "METRICS_JSONL",
    "Normalize",
    "SmallCNN",
    "WideResNet",
    "append_metrics_row",
    "as_classifier",
    "check_model_kwargs",
    "check_resume",
    "check_workdir",
    "checkpoint_classifier",
    "checkpoint_fingerprint",
    "checkpoint_manager",
    "classifier_fingerprint",
    "classifier_from_split",
    "features_and_head",
    "fold_batchnorm",
    "folded_classifier",
    "get_model",
    "json_normal",
    "latest_epoch",
    "load_classifier",
    "load_model",
    "load_warm_start",
    "model_names",
    "read_metrics",
    "restore_intact",
    "save_checkpoint",
    "set_aside",
    "weights_fingerprint",
    "write_model_meta",
]
