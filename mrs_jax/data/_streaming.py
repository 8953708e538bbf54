"""Data sources decoded on demand by worker threads, with bounded prefetch.

A :class:`StreamedSource` keeps only what finds each example (a file list, a record
index), never the decoded images. ``get_batch(indices)`` decodes those examples in a
thread pool: the random-access contract the certification job reads.
``iter_batches`` (and :func:`iterate_batches`) keep the next ``prefetch`` batches
decoding while the caller uses one, so memory is bounded by ``prefetch + 2``
batches. Host drivers (threads, files); nothing here touches a device
(``docs/data.md``).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from mrs_jax.core import checks as _checks

Batch = tuple[np.ndarray, np.ndarray]
DEFAULT_PREFETCH = 2


def default_workers() -> int:
    """The CPUs this process may run on: the default number of decode threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Pending(NamedTuple):
    """One batch whose examples are being decoded into ``images`` / ``labels``."""

    images: np.ndarray
    labels: np.ndarray
    futures: list[Future]

    def wait(self) -> Batch:
        try:
            for future in self.futures:
                future.result()
        except BaseException:
            self.cancel()
            raise
        return self.images, self.labels

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


class StreamedSource:
    """Random access to N examples, each decoded on demand by worker threads.

    A subclass sets ``num_classes`` and ``image_shape`` (H, W, C) and defines
    ``__len__`` and ``_load(index) -> (image [H, W, C] uint8, label)``, which
    must be safe to call from several threads at once; ``_name(index)`` names an
    example in error messages. The thread pool starts at the first read and stops
    at :meth:`close` (or when the source is garbage-collected).

    Args:
        num_workers: decode threads (None: :func:`default_workers`).
    """

    num_classes: int
    image_shape: tuple[int, int, int]

    def __init__(self, num_workers: int | None = None):
        if num_workers is None:
            num_workers = default_workers()
        self.num_workers = _checks.positive_int(num_workers, "num_workers")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _name(self, index: int) -> str:
        return f"example {index}"

    def get_batch(self, indices: Any) -> Batch:
        """Decodes the examples at ``indices`` (host driver; blocks until done).

        Args:
            indices: ``[b]`` integers in [0, len(self)), any order, repeats allowed.

        Returns:
            ``(images [b, H, W, C] float32 in [0, 1], labels [b] int32)``.

        Raises:
            TypeError: ``indices`` not integers.
            ValueError: ``indices`` not 1-D or outside [0, len(self)); an example
                that cannot be decoded, or whose shape is not ``image_shape``.
        """
        return self._start(self._indices(indices), np.float32).wait()

    def get_uint8_batch(self, indices: Any) -> Batch:
        """As :meth:`get_batch`, with ``images [b, H, W, C]`` uint8 in 0..255."""
        return self._start(self._indices(indices), np.uint8).wait()

    def verify(self, batch_size: int = 1024) -> None:
        """Decodes every example once and keeps nothing (host driver): a damaged,
        unreadable or odd-shaped file is refused before the data is used.

        Raises:
            ValueError: the first example that cannot be used, named.
        """
        everything = np.arange(len(self))
        for _ in self.iter_batches(everything, batch_size, dtype=np.uint8):
            pass

    def iter_batches(
        self,
        indices: Any,
        batch_size: int,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        dtype: Any = np.float32,
    ) -> Iterator[Batch]:
        """Yields :meth:`get_batch` of consecutive ``batch_size`` slices of ``indices``.

        The next ``prefetch`` batches decode while the caller holds one, so at
        most ``prefetch + 2`` batches are in memory. Host driver.

        Args:
            indices: ``[n]`` integers in [0, len(self)).
            batch_size: examples per batch (the last one may be smaller).
            prefetch: batches decoded ahead (0: none).
            dtype: ``np.float32`` (default: values in [0, 1]) or ``np.uint8``
                (0..255 as decoded, e.g. to convert on the accelerator).

        Returns:
            An iterator of ``(images [b, H, W, C] dtype, labels [b] int32)``;
            ``indices`` and the settings are checked at once.
        """
        indices = self._indices(indices)
        batch_size = _checks.positive_int(batch_size, "batch_size")
        prefetch = _checks.positive_int(prefetch, "prefetch", minimum=0)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise ValueError(f"dtype must be float32 or uint8, got {dtype}")
        return self._stream(indices, batch_size, prefetch, dtype.type)

    def close(self) -> None:
        """Stops the decode threads (a later read starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> StreamedSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _stream(
        self, indices: np.ndarray, batch_size: int, prefetch: int, dtype: type
    ) -> Iterator[Batch]:
        pending: collections.deque[_Pending] = collections.deque()
        try:
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                pending.append(self._start(chunk, dtype))
                if len(pending) > prefetch:
                    yield pending.popleft().wait()
            while pending:
                yield pending.popleft().wait()
        finally:  # an abandoned iterator leaves no work queued
            for batch in pending:
                batch.cancel()

    def _indices(self, indices: Any) -> np.ndarray:
        array = np.asarray(indices)
        if array.ndim != 1:
            raise ValueError(f"indices must be 1-D; got shape {array.shape}")
        if array.size == 0:
            return array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"indices must be integers; got dtype {array.dtype}")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= len(self):
            raise ValueError(f"indices must lie in [0, {len(self)}); got {low}..{high}")
        return array.astype(np.int64)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.num_workers, thread_name_prefix="mrs-decode"
                )
            return self._pool

    def _start(self, indices: np.ndarray, dtype: type) -> _Pending:
        """Queues one batch's decodes; each task fills its own slots.

        A task decodes a few consecutive slots (about four tasks a worker for a
        batch), which costs fewer futures than one a slot and still spreads the
        batch over every worker.
        """
        images = np.empty((len(indices), *self.image_shape), dtype)
        labels = np.empty(len(indices), np.int32)
        per_task = max(1, len(indices) // (4 * self.num_workers))
        pool = self._executor() if len(indices) else None
        futures = [
            pool.submit(
                self._fill, images, labels, start, indices[start : start + per_task]
            )
            for start in range(0, len(indices), per_task)
        ]
        return _Pending(images, labels, futures)

    def _fill(
        self, images: np.ndarray, labels: np.ndarray, start: int, indices: np.ndarray
    ) -> None:
        expected = tuple(self.image_shape)
        for slot, index in enumerate(indices.tolist(), start):
            image, label = self._load(index)
            if image.shape != expected:
                raise ValueError(
                    f"{self._name(index)} is {_size(image.shape)}, but the data "
                    f"set's images are {_size(expected)} (mixed image sizes)"
                )
            if images.dtype == np.uint8:
                images[slot] = image
            else:  # the same values as image.astype(np.float32) / 255.0
                np.divide(image, np.float32(255), out=images[slot], dtype=np.float32)
            labels[slot] = label


def _size(shape: tuple[int, ...]) -> str:
    """``[H, W, C]`` as ``WxHxC``, as image sizes are said."""
    return f"{shape[1]}x{shape[0]}x{shape[2]}" if len(shape) == 3 else str(shape)


def iterate_batches(
    source: Any,
    indices: Any = None,
    batch_size: int = 256,
    *,
    prefetch: int = DEFAULT_PREFETCH,
) -> Iterator[Batch]:
    """``source.get_batch`` of consecutive ``batch_size`` slices of ``indices``.

    A :class:`StreamedSource` decodes ``prefetch`` batches ahead in its worker
    threads; an in-memory source (anything else with ``get_batch``) is sliced
    batch by batch. Host driver.

    Args:
        source: a data source with ``get_batch(indices)``.
        indices: ``[n]`` integers, the examples in the order wanted (None:
            every example, in order).
        batch_size: examples per batch (the last one may be smaller).
        prefetch: batches decoded ahead by a streamed source (0: none).

    Returns:
        An iterator of ``(images [b, H, W, C] float32 in [0, 1], labels [b]
        int32)``.
    """
    if not callable(getattr(source, "get_batch", None)):
        raise TypeError(
            f"source must have get_batch(indices); got {type(source).__name__}"
        )
    if indices is None:
        indices = np.arange(len(source))
    if isinstance(source, StreamedSource):
        return source.iter_batches(indices, batch_size, prefetch=prefetch)
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D; got shape {indices.shape}")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    _checks.positive_int(prefetch, "prefetch", minimum=0)
    return (
        source.get_batch(indices[start : start + batch_size])
        for start in range(0, len(indices), batch_size)
    )
