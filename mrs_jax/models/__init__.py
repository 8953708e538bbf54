"""Base classifiers (Flax NNX) with mean/std normalisation as their first layer."""

from mrs_jax.models.classifier import as_classifier, features_and_head
from mrs_jax.models.normalize import Normalize
from mrs_jax.models.registry import get_model, model_names
from mrs_jax.models.resnet_cifar import CifarResNet
from mrs_jax.models.resnet_imagenet import ImageNetResNet
from mrs_jax.models.small_cnn import SmallCNN
from mrs_jax.models.wide_resnet import WideResNet

__all__ = [
    "CifarResNet",
    "ImageNetResNet",
    "Normalize",
    "SmallCNN",
    "WideResNet",
    "as_classifier",
    "features_and_head",
    "get_model",
    "model_names",
]
