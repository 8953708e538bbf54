"""Datasets as ``[N, H, W, C]`` float32 images in [0, 1] with int32 labels.

:func:`dataset_source` opens a split by name (``digits``, ``cifar10``,
``imagenet2012``, ``image_folder``, ``synthetic``): small sets are held in
memory (:class:`ArraySource`), class folders and tensorflow-datasets splits are
streamed (:class:`FolderSource`, :class:`TfdsSource`) so memory is bounded by a
batch. :func:`load_dataset` reads a whole split into memory. tensorflow-datasets
never downloads unless asked. Names, splits and layouts: ``docs/data.md``.
"""

import dataclasses
import functools
import importlib.util
import pickle
from pathlib import Path

import numpy as np

import mrs_jax.data._image_folder as image_folder
from mrs_jax.data._image_folder import FolderSource
from mrs_jax.data._streaming import StreamedSource, iterate_batches

__all__ = [
    "ArraySource",
    "FolderSource",
    "StreamedSource",
    "TfdsSource",
    "dataset_source",
    "iterate_batches",
    "load_dataset",
    "read_cifar10_folder",
    "resize_center_crop",
]

DIGITS_TEST_SIZE = 300
_SPLITS = {
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "imagenet2012": ("train", "validation"),
    "synthetic": ("train", "test"),
    "image_folder": None,  # any split: the folder's name
}
# The folder holding each split in the usual ImageNet layout.
_IMAGENET_FOLDERS = {"train": "train", "validation": "val"}
IMAGENET_RESIZE = 256
IMAGENET_CROP = 224


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """An in-memory dataset.

    Attributes:
        images: ``[N, H, W, C]`` uint8 (0..255) or float32 in [0, 1].
        labels: ``[N]`` int32.
        num_classes: K.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self):
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError(
                f"images must be [N, H, W, C] with N == len(labels); got "
                f"{self.images.shape} and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(images [b, H, W, C] float32 in [0, 1], labels [b] int32)``."""
        images = self.images[indices]
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        return images.astype(np.float32), self.labels[indices].astype(np.int32)


class TfdsSource(StreamedSource):
    """Random access to a prepared tensorflow-datasets split, decoded on demand.

    Each example is read and decoded (``imagenet2012``: resized so its shorter
    side is 256 and centre-cropped to 224) in worker threads when a batch asks
    for it: ``get_batch`` / ``iter_batches`` of :class:`StreamedSource`.

    Args:
        name: tfds name (``cifar10`` or ``imagenet2012``).
        split: tfds split name.
        data_dir: tfds data directory (None: the tfds default).
        download: forwarded to tfds; keep False unless you mean to download.
        num_workers: decode threads (None: the CPUs this process may use).
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None,
        download: bool = False,
        num_workers: int | None = None,
    ):
        super().__init__(num_workers)
        try:
            import tensorflow_datasets as tfds
        except ImportError as err:
            raise ImportError(
                f"dataset {name!r} needs tensorflow-datasets: "
                "pip install 'mrs-jax[tfds]'"
            ) from err
        not_prepared = (NotImplementedError, AssertionError, FileNotFoundError)
        not_found = getattr(tfds.core, "DatasetNotFoundError", None)
        if not_found is not None:
            not_prepared = not_prepared + (not_found,)
        try:
            self._source = tfds.data_source(
                name, split=split, data_dir=data_dir, download=download
            )
        except not_prepared as err:
            raise FileNotFoundError(
                f"tensorflow-datasets {name!r} split {split!r} is not prepared in "
                f"data_dir={data_dir!r} in a random-access format. Prepare it once "
                f"with: tfds build {name} --file_format=array_record"
                + (f" --data_dir={data_dir}" if data_dir else "")
                + (
                    " (ImageNet: put the ILSVRC2012 tarballs in "
                    "<data_dir>/downloads/manual first)"
                    if name == "imagenet2012"
                    else " (or put the python pickles of cifar-10-python.tar.gz in "
                    "<data_dir>/cifar-10-batches-py)"
                )
                + f". Original error: {err}"
            ) from err
        self.name = name
        self.num_classes = 1000 if name == "imagenet2012" else 10
        self.image_shape = (
            (IMAGENET_CROP, IMAGENET_CROP, 3) if name == "imagenet2012" else (32, 32, 3)
        )

    def __len__(self) -> int:
        return len(self._source)

    def _name(self, index: int) -> str:
        return f"{self.name} example {index}"

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        example = self._source[index]
        image = np.asarray(example["image"])
        if self.name == "imagenet2012":
            image = resize_center_crop(image, IMAGENET_RESIZE, IMAGENET_CROP)
        return image, int(example["label"])


def resize_center_crop(image: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Resizes ``image: [H, W, C]`` so its shorter side is ``resize``; crops centre.

    Returns:
        ``[crop, crop, C]`` with the input's dtype.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C]; got {image.shape}")
    if not 0 < crop <= resize:
        raise ValueError(f"need 0 < crop <= resize; got crop={crop}, resize={resize}")
    height, width = image.shape[:2]
    scale = resize / min(height, width)
    new_h = max(resize, round(height * scale))
    new_w = max(resize, round(width * scale))
    import cv2  # OpenCV loads on first use, not with the package

    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    resized = resized.reshape(new_h, new_w, image.shape[2])
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return resized[top : top + crop, left : left + crop]


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: ``[1797, 8, 8]`` pixels in 0..16 and the labels,
    read from the file scikit-learn ships, without importing scikit-learn (about
    3 s of every process that opens digits); its ``load_digits`` if the file has
    moved."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], "datasets", "data", "digits.csv.gz") if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _digits(split: str) -> ArraySource:
    import cv2

    pixels, labels = _digits_arrays()
    images = pixels.astype(np.float32) / 16.0  # [1797, 8, 8] in [0, 1]
    up = np.stack(
        [cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in images]
    )
    up = np.clip(up, 0.0, 1.0)[..., None].repeat(3, axis=-1)
    order = np.random.default_rng(0).permutation(len(images))
    chosen = order[:DIGITS_TEST_SIZE] if split == "test" else order[DIGITS_TEST_SIZE:]
    return ArraySource(up[chosen], labels[chosen].astype(np.int32), 10)


def _cifar_folder(data_dir: Path) -> Path | None:
    for folder in (data_dir / "cifar-10-batches-py", data_dir):
        if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
            return folder
    return None


def read_cifar10_folder(folder: str | Path, split: str) -> ArraySource:
    """Reads the python pickles of ``cifar-10-batches-py``.

    Args:
        folder: the ``cifar-10-batches-py`` directory (``data_batch_1`` .. ``_5``,
            ``test_batch``; dicts with ``b"data"`` uint8 ``[N, 3072]`` CHW-flattened
            and ``b"labels"``).
        split: ``train`` or ``test``.

    Returns:
        An :class:`ArraySource` with uint8 ``[N, 32, 32, 3]`` images.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    folder = Path(folder)
    names = (
        ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    )
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch file missing: {path}")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], np.uint8)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], np.int32))
    return ArraySource(np.concatenate(images), np.concatenate(labels), 10)


def _synthetic(
    split: str, num_examples: int, image_shape: tuple, num_classes: int, seed: int
) -> ArraySource:
    if num_examples < 1 or num_classes < 2 or len(image_shape) != 3:
        raise ValueError(
            "synthetic needs num_examples >= 1, num_classes >= 2 and image_shape "
            f"(H, W, C); got {num_examples}, {num_classes}, {image_shape}"
        )
    templates = np.random.default_rng(seed).uniform(size=(num_classes, *image_shape))
    rng = np.random.default_rng([seed, _SPLITS["synthetic"].index(split) + 1])
    labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
    noise = rng.uniform(size=(num_examples, *image_shape))
    images = (0.5 * noise + 0.5 * templates[labels]).astype(np.float32)
    return ArraySource(images, labels, num_classes)


def dataset_source(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    num_examples: int = 256,
    image_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    seed: int = 0,
) -> ArraySource | StreamedSource:
    """A random-access dataset: ``len(source)`` and ``source.get_batch(indices)``.

    Args:
        name: ``digits``, ``cifar10``, ``imagenet2012``, ``image_folder`` or
            ``synthetic``.
        split: ``train`` or ``test`` (``imagenet2012``: ``train`` or
            ``validation``; ``image_folder``: any folder name), see
            ``docs/data.md``.
        data_dir: a folder holding ``cifar-10-batches-py`` or class folders
            (cifar10), ImageNet's ``train``/``val`` class folders, an
            ``image_folder`` root, or the tensorflow-datasets data directory.
        download: let tensorflow-datasets download and prepare (off by default).
        num_examples, image_shape, num_classes, seed: ``synthetic`` only.

    Returns:
        An in-memory :class:`ArraySource` (digits, synthetic, the CIFAR-10
        pickles), or a streamed :class:`FolderSource` (class folders) or
        :class:`TfdsSource`; each has ``len``, ``get_batch(indices)``,
        ``num_classes`` and ``image_shape``, and the streamed ones decode only
        what a batch asks for.

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: ``data_dir`` is not a folder (unless ``download``),
            or tensorflow-datasets
            data not prepared.
    """
    if name not in _SPLITS:
        raise ValueError(f"name must be one of {tuple(_SPLITS)}; got {name!r}")
    if _SPLITS[name] is not None and split not in _SPLITS[name]:
        raise ValueError(
            f"split for {name} must be one of {_SPLITS[name]}; got {split!r}"
        )
    if name == "digits":
        return _digits(split)
    if name == "synthetic":
        return _synthetic(split, num_examples, tuple(image_shape), num_classes, seed)
    if name == "image_folder":
        if data_dir is None:
            raise ValueError(
                "image_folder needs data_dir (ROOT of ROOT/<split>/<class>)"
            )
        return _folder_source(Path(data_dir) / split)
    if data_dir is not None and not download and not Path(data_dir).is_dir():
        # Before tensorflow-datasets, which would talk of unprepared data.
        raise FileNotFoundError(
            f"data_dir {data_dir} does not exist (or is not a folder): point it at "
            f"the folder that holds the {name} data"
        )
    if name == "cifar10" and data_dir is not None:
        folder = _cifar_folder(Path(data_dir))
        if folder is not None:
            return read_cifar10_folder(folder, split)
        if (Path(data_dir) / split).is_dir():
            return _folder_source(
                Path(data_dir) / split,
                class_order=image_folder.CIFAR10_CLASSES,
                image_shape=(32, 32, 3),
            )
    if name == "imagenet2012" and data_dir is not None:
        folder = Path(data_dir) / _IMAGENET_FOLDERS[split]
        if folder.is_dir():
            crop = functools.partial(
                resize_center_crop, resize=IMAGENET_RESIZE, crop=IMAGENET_CROP
            )
            return _folder_source(
                folder, transform=crop, image_shape=(IMAGENET_CROP, IMAGENET_CROP, 3)
            )
    return TfdsSource(name, split, data_dir, download)


def _folder_source(split_dir: Path, **kwargs) -> FolderSource:
    return FolderSource(split_dir, **kwargs)


def load_dataset(
    name: str,
    split: str,
    *,
    max_examples: int | None = None,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split into memory.

    Args:
        name, split, **kwargs: as for :func:`dataset_source`.
        max_examples: keep only the first this many examples (required for
            ``imagenet2012``, whose full splits do not fit in memory; stream those
            with :func:`dataset_source` instead).

    Returns:
        ``(images [N, H, W, C] float32 in [0, 1], labels [N] int32)``.
    """
    if name == "imagenet2012" and max_examples is None:
        raise ValueError(
            "imagenet2012 does not fit in memory: pass max_examples, or use "
            "dataset_source(...).get_batch(indices)"
        )
    if max_examples is not None and max_examples < 0:
        raise ValueError(f"max_examples must be >= 0; got {max_examples}")
    source = dataset_source(name, split, **kwargs)
    count = len(source) if max_examples is None else min(max_examples, len(source))
    return source.get_batch(np.arange(count))
