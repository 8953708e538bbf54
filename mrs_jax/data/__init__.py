"""Data sources: the embedded digits, CIFAR-10 / ImageNet through tfds or image
folders, and streamed batches (``docs/data.md``).
"""

from ._datasets import (
    ArraySource as ArraySource,
    dataset_source as dataset_source,
    load_dataset as load_dataset,
    read_cifar10_folder as read_cifar10_folder,
    resize_center_crop as resize_center_crop,
)
from ._image_folder import (
    CIFAR10_CLASSES as CIFAR10_CLASSES,
    FolderSource as FolderSource,
    read_image_folder as read_image_folder,
)
from ._streaming import (
    StreamedSource as StreamedSource,
    default_workers as default_workers,
    iterate_batches as iterate_batches,
)

__all__ = [
    "ArraySource",
    "CIFAR10_CLASSES",
    "FolderSource",
    "StreamedSource",
    "dataset_source",
    "default_workers",
    "iterate_batches",
    "load_dataset",
    "read_cifar10_folder",
    "read_image_folder",
    "resize_center_crop",
]
