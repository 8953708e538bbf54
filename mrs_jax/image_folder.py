"""Image datasets stored as class folders: ``ROOT/<split>/<class>/*.{jpg,jpeg,png}``.

Classes are numbered in sorted folder order unless a class order is given (CIFAR-10
uses its own: airplane .. truck = 0..9). Images are decoded with OpenCV in parallel
threads (OpenCV releases the GIL while decoding), converted to RGB and kept in memory
as uint8. For ImageNet (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) each image is
resized so its shorter side is 256 and centre-cropped to 224 while it is read, as the
tensorflow-datasets path does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def class_folders(
    split_dir: Path, class_order: Sequence[str] | None = None
) -> list[Path]:
    """The class folders of ``split_dir``, in label order.

    Raises:
      FileNotFoundError: ``split_dir`` is missing or holds no class folder, or a
        class of ``class_order`` has no folder.
      ValueError: a folder not in ``class_order`` (the data set is not the one
        named).
    """
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder split not found: {split_dir}")
    found = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not found:
        raise FileNotFoundError(f"{split_dir} holds no class folders")
    if class_order is None:
        return found
    names = {p.name: p for p in found}
    missing = [c for c in class_order if c not in names]
    if missing:
        raise FileNotFoundError(f"{split_dir} has no folder for classes {missing}")
    extra = sorted(set(names) - set(class_order))
    if extra:
        raise ValueError(f"{split_dir} has folders {extra} outside the known classes")
    return [names[c] for c in class_order]


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted by name (any suffix case)."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise FileNotFoundError(
            f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def decode_rgb(path: Path) -> np.ndarray:
    """Decodes one image file to uint8 ``[H, W, 3]`` RGB.

    Raises:
      ValueError: the file is not a readable image.
    """
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"unreadable image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_folder(
    split_dir: str | os.PathLike,
    *,
    class_order: Sequence[str] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    max_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads every image below ``split_dir`` into memory.

    Args:
      split_dir: ``ROOT/<split>`` holding one folder per class.
      class_order: class folder names in label order (None: sorted order).
      transform: applied to each decoded ``[H, W, 3]`` uint8 image (e.g. resize
        and centre crop), in the worker threads.
      image_shape: the shape every image must have after ``transform`` (None: the
        first image's).
      max_workers: decoding threads (None: ``min(32, cpu_count + 4)``).

    Returns:
      ``(images [N, H, W, 3] uint8, labels [N] int32, class names)``, ordered by
      class, then by file name.

    Raises:
      FileNotFoundError: missing split or class folder, or an empty class folder.
      ValueError: an unreadable image, or images of different shapes.
    """
    split_dir = Path(split_dir)
    folders = class_folders(split_dir, class_order)
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        found = image_files(folder)
        files += found
        labels += [label] * len(found)

    def load(path: Path) -> np.ndarray:
        image = decode_rgb(path)
        return image if transform is None else transform(image)

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        decoded = list(pool.map(load, files, chunksize=256))
    expected = tuple(image_shape) if image_shape else decoded[0].shape
    for path, image in zip(files, decoded, strict=True):
        if image.shape != expected:
            raise ValueError(
                f"{path} is {image.shape[1]}x{image.shape[0]}x{image.shape[2]}, "
                f"but the data set's images are {expected[1]}x{expected[0]}x"
                f"{expected[2]} (mixed image sizes)"
            )
    images = np.stack(decoded) if decoded else np.zeros((0, *expected), np.uint8)
    return images, np.asarray(labels, np.int32), [f.name for f in folders]
