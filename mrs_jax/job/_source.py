"""Where a job's images come from: its data set, split and, for the synthetic
set, shape, classes, size and seed."""

from __future__ import annotations

import functools
from typing import Any

from mrs_jax.job._config import JobConfig


def job_source(config: JobConfig):
    """The job's images: its data set and split, read afresh from ``data_dir``
    (files may change between calls), else loaded once and cached."""
    synthetic = config.dataset == "synthetic"
    if config.data_dir is not None:
        # Files on disk may change between two calls: list them afresh.
        return _cached_source.__wrapped__(
            config.dataset, config.split, config.data_dir, None, None, None, None
        )
    return _cached_source(
        config.dataset,
        config.split,
        config.data_dir,
        tuple(config.synthetic_shape) if synthetic else None,
        config.synthetic_classes if synthetic else None,
        config.synthetic_examples if synthetic else None,
        config.image_seed if synthetic else None,
    )


@functools.lru_cache(maxsize=2)
def _cached_source(dataset, split, data_dir, shape, classes, examples, seed):
    # validate() and run() read the same data: load it once.
    from mrs_jax.data import dataset_source

    kwargs: dict[str, Any] = {"data_dir": data_dir}
    if dataset == "synthetic":
        kwargs.update(
            num_examples=examples, image_shape=shape, num_classes=classes, seed=seed
        )
    return dataset_source(dataset, split, **kwargs)
