"""A group of test images as the job's stages share it: inputs, keys, phase clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from mrs_jax.job._config import JobConfig

Classify = Callable[[jax.Array], jax.Array]


class Group(NamedTuple):
    """A group's inputs, shared by the mode row builders; ``seconds`` collects
    each phase's time for the whole group."""

    config: JobConfig
    classify: Classify
    num_classes: int
    images: np.ndarray
    labels: list[int]
    features_and_head: tuple[Classify, Classify] | None
    seconds: dict[str, float]


class Keys(NamedTuple):
    """Each image's independent keys (``split(key, 3)``, in this order), ``[B]``."""

    attack: jax.Array
    clean: jax.Array
    certify: jax.Array


class Clock:
    """Adds the time of a ``with`` block to ``seconds[name]``."""

    def __init__(self, seconds: dict[str, float], name: str):
        self.seconds, self.name = seconds, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        elapsed = time.perf_counter() - self.start
        self.seconds[self.name] = self.seconds.get(self.name, 0.0) + elapsed
