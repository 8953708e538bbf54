"""Blocking timers shared by the benchmark scripts.

JAX dispatches device work asynchronously: a jitted call, or a device function
such as ``mrs_jax.sample_counts``, returns arrays before they are computed, so a
timer that stops when the call returns measures dispatch. These timers stop only
after ``jax.block_until_ready`` on whatever the call returned (arrays anywhere in
a pytree; host values pass through unchanged).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax


def timed(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, float]:
    """``(result, seconds)`` of ``fn(*args, **kwargs)``, its result computed."""
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args, **kwargs))
    return result, time.perf_counter() - start


def seconds(fn: Callable[[], Any]) -> float:
    """Wall seconds of ``fn()``, its result computed."""
    return timed(fn)[1]


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` blocking calls of ``fn()``, in seconds."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best = math.inf
    for _ in range(repeats):
        best = min(best, seconds(fn))
    return best
