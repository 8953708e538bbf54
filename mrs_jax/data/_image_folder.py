"""Image datasets stored as class folders: ``ROOT/<split>/<class>/*.{jpg,jpeg,png}``.

Classes are numbered in sorted folder order unless a class order is given (CIFAR-10
uses its own: airplane .. truck = 0..9). :class:`FolderSource` lists the files when
it opens and decodes images to RGB on demand in worker threads, so a folder of any
size opens quickly and reads in memory bounded by a batch.
:func:`read_image_folder` reads a whole (small) folder into memory
(``docs/data.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mrs_jax.data._streaming import StreamedSource

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SUFFIX_BYTES = tuple(suffix.encode() for suffix in IMAGE_SUFFIXES)
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
    # Hidden folders (``.thumbnails``, ``.ipynb_checkpoints``) are not classes.
    found = sorted(
        p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
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


def _image_names(folder: Path) -> list[bytes]:
    """The image file names of one class folder, sorted (file-system bytes).

    ``os.scandir`` reads the file types with the names, so no file is stat'ed.
    """
    with os.scandir(os.fsencode(folder)) as entries:
        names = [
            entry.name
            for entry in entries
            if entry.name.lower().endswith(_SUFFIX_BYTES) and _is_file(entry, folder)
        ]
    if not names:
        raise FileNotFoundError(
            f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return sorted(names)


def _is_file(entry: os.DirEntry, folder: Path) -> bool:
    """``entry.is_file()``, or one line naming the file where it cannot be
    resolved (a symbolic link loop, a name too long)."""
    try:
        return entry.is_file()
    except OSError as err:
        name = os.fsdecode(entry.name)
        raise ValueError(f"{folder / name}: cannot be read ({err.strerror})") from None


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted by name (any suffix case)."""
    return [folder / os.fsdecode(name) for name in _image_names(Path(folder))]


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text for a message, undecodable bytes escaped."""
    raw = os.fsencode(os.fspath(path))
    return raw.decode("utf-8", errors="backslashreplace")


def _check_complete(data: bytes, path: str | os.PathLike) -> None:
    """Refuses a JPEG without its end marker or a PNG without its end chunk.

    Decoders fill the missing rows of a truncated file with grey and warn on
    stderr; a truncated image would be certified as if it were whole.
    """
    tail = data[-64:]
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        raise ValueError(f"damaged image: {shown_path(path)} (JPEG truncated)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise ValueError(f"damaged image: {shown_path(path)} (PNG truncated)")


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decodes one image file to uint8 ``[H, W, 3]`` RGB (host function).

    The file's bytes are read by Python (any file name, UTF-8 or not) and
    decoded by OpenCV; a truncated JPEG or PNG is refused.

    Raises:
      ValueError: the file is missing, unreadable (permission denied), damaged
        or not an image; the message names the file.
    """
    import cv2  # OpenCV loads on first use, not with the package

    try:
        data = Path(os.fsdecode(os.fspath(path))).read_bytes()
    except PermissionError:
        raise ValueError(f"cannot read {shown_path(path)}: permission denied") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot read {shown_path(path)}: {reason}") from None
    _check_complete(data, path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ValueError(f"unreadable image: {shown_path(path)}")
    return image


class FolderSource(StreamedSource):
    """The images below ``split_dir``, listed at once and decoded on demand.

    Opening lists the files and reads one image (the first, for its shape, unless
    ``image_shape`` is given); it keeps the file names as one compact bytes array
    (about 30 bytes a file) and the labels. ``get_batch`` and ``iter_batches``
    (:class:`StreamedSource`) decode, transform and scale in ``num_workers``
    threads. An unreadable image or one of another shape raises when it is read.

    Args:
      split_dir: ``ROOT/<split>`` holding one folder per class.
      class_order: class folder names in label order (None: sorted order).
      transform: applied to each decoded ``[H, W, 3]`` uint8 RGB image (e.g.
        resize and centre crop), in the worker threads.
      image_shape: the shape every image must have after ``transform`` (None:
        the first image's).
      num_workers: decode threads (None: the CPUs this process may use).

    Attributes:
      labels: ``[N]`` int32, ordered by class, then by file name.
      classes: the class folder names in label order.
      num_classes: ``len(classes)``.
      image_shape: ``(H, W, 3)``.

    Raises:
      FileNotFoundError: missing split or class folder, or an empty class folder.
      ValueError: a folder outside ``class_order``; the first image unreadable.
    """

    def __init__(
        self,
        split_dir: str | os.PathLike,
        *,
        class_order: Sequence[str] | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        image_shape: tuple[int, int, int] | None = None,
        num_workers: int | None = None,
    ):
        super().__init__(num_workers)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable; got {transform!r}")
        self.split_dir = Path(split_dir)
        folders = class_folders(self.split_dir, class_order)
        names = [np.array(_image_names(folder), np.bytes_) for folder in folders]
        counts = [len(found) for found in names]
        self._names = np.concatenate(names)
        self._folders = [os.fsencode(folder) + b"/" for folder in folders]
        self.labels = np.repeat(np.arange(len(folders), dtype=np.int32), counts)
        self.classes = [folder.name for folder in folders]
        self.num_classes = len(folders)
        self._transform = transform
        if image_shape is None:
            image_shape = self._load(0)[0].shape
        elif len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C); got {image_shape!r}")
        self.image_shape = tuple(int(v) for v in image_shape)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        """The file of example ``index``."""
        label = self.labels[index]
        return os.fsdecode(self._folders[label] + self._names[index])

    def _name(self, index: int) -> str:
        return self.path(index)

    def image_name(self, index: int) -> str:
        """Example ``index`` as ``<class folder>/<file>`` (undecodable bytes
        escaped): what a result row records to tie itself to its image."""
        label = self.labels[index]
        raw = os.fsencode(self.classes[label]) + b"/" + bytes(self._names[index])
        return raw.decode("utf-8", errors="backslashreplace")

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        image = decode_rgb(self.path(index))
        if self._transform is not None:
            image = self._transform(image)
        return image, int(self.labels[index])


def read_image_folder(
    split_dir: str | os.PathLike,
    *,
    class_order: Sequence[str] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    max_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads every image below ``split_dir`` into memory (a small folder).

    Args:
      split_dir, class_order, transform, image_shape: as for
        :class:`FolderSource`.
      max_workers: decoding threads (None: the CPUs this process may use).

    Returns:
      ``(images [N, H, W, 3] uint8, labels [N] int32, class names)``, ordered by
      class, then by file name.

    Raises:
      FileNotFoundError: missing split or class folder, or an empty class folder.
      ValueError: an unreadable image, or images of different shapes.
    """
    with FolderSource(
        split_dir,
        class_order=class_order,
        transform=transform,
        image_shape=image_shape,
        num_workers=max_workers,
    ) as source:
        images, labels = source.get_uint8_batch(np.arange(len(source)))
    return images, labels, list(source.classes)
