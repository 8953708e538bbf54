"""Private input checks shared by the public functions.

Each check raises a ``TypeError`` or ``ValueError`` that names the argument, so a
user sees which input is wrong rather than a shape error deep inside XLA.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def image(x: Any, name: str = "x") -> np.ndarray:
    """Returns ``x`` as a float32 ``[H, W, C]`` array with values in [0, 1]."""
    arr = _float_array(x, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be one image [H, W, C], got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{name} has an empty axis: shape {arr.shape}")
    _in_unit_range(arr, name)
    return arr


def images(x: Any, name: str = "images") -> np.ndarray:
    """Returns ``x`` as a float32 ``[B, H, W, C]`` array with values in [0, 1]."""
    arr = _float_array(x, name)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be a batch [B, H, W, C], got shape {arr.shape}")
    _in_unit_range(arr, name)
    return arr


def image_batch(x: Any, name: str = "images") -> np.ndarray:
    """Returns ``x`` as a float32 ``[B, H, W, C]`` array in [0, 1] with B >= 1."""
    arr = images(x, name)
    if min(arr.shape) < 1:
        raise ValueError(f"{name} has an empty axis: shape {arr.shape}")
    return arr


def masks(m: Any, batch_shape: tuple[int, ...], name: str = "masks") -> np.ndarray:
    """Returns ``m`` as bool ``[B, H, W]`` matching ``batch_shape[:3]``, refusing a
    mask with no pixel set (a certificate over no pixel means nothing)."""
    if m is None:
        raise TypeError(f"{name} must be a [B, H, W] array, got None")
    arr = np.asarray(m)
    if arr.shape != tuple(batch_shape[:3]):
        raise ValueError(
            f"{name} must have shape [B, H, W] = {tuple(batch_shape[:3])} to match "
            f"the images, got {arr.shape}"
        )
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be bool or 0/1 numbers, got {arr.dtype}")
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} must hold only 0 and 1 (or bools)")
        arr = arr.astype(bool)
    empty = np.flatnonzero(~arr.reshape(len(arr), -1).any(1))
    if empty.size:
        raise ValueError(
            f"{name}[{int(empty[0])}] is all False: there is no pixel to smooth "
            "or certify"
        )
    return arr


def key_batch(keys: Any, count: int, name: str = "keys") -> jax.Array:
    """Returns ``keys`` as a ``[count]`` array of typed PRNG keys (one per image).

    A sequence of single typed keys is stacked.
    """
    if isinstance(keys, (list, tuple)):
        for i, k in enumerate(keys):
            typed_key(k, f"{name}[{i}]")
        keys = jax.numpy.stack(keys) if keys else None
    typed = isinstance(keys, jax.Array) and jax.dtypes.issubdtype(
        keys.dtype, jax.dtypes.prng_key
    )
    if not typed:
        raise TypeError(
            f"{name} must be [B] typed PRNG keys (e.g. jax.random.split(key, B))"
        )
    if keys.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {keys.shape}")
    return keys


def key_or_keys(key: Any, count: int, single: bool, name: str = "key") -> jax.Array:
    """``[count]`` typed keys for ``count`` images: one key (split ``count`` ways
    for a batch, kept as is for one image) or ``[count]`` keys, one per image."""
    one = (isinstance(key, jax.Array) and key.ndim == 0) or (
        isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == np.uint32
    )
    if single or one:
        one_key = prng_key(key, name)
        return one_key[None] if count == 1 else jax.random.split(one_key, count)
    return key_batch(key, count, name=name)


def labels(y: Any, count: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Returns ``y`` as ``[count]`` int32 class labels in ``[0, num_classes)``."""
    arr = np.asarray(y)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer labels, got dtype {arr.dtype}")
    if arr.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {arr.shape}")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {arr}")
    return arr.astype(np.int32)


def label_or_labels(
    y: Any, count: int, single: bool, num_classes: int, name: str = "y"
) -> np.ndarray:
    """Returns ``y`` as ``[count]`` int32 labels in ``[0, num_classes)``: a scalar
    when the input was one image (``single``), else shape ``[count]``."""
    arr = np.asarray(y)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer labels, got dtype {arr.dtype}")
    if single:
        if arr.ndim != 0:
            raise ValueError(
                f"{name} must be a scalar for a single image, got shape {arr.shape}"
            )
        if not 0 <= arr < num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {arr.item()}")
        arr = arr.reshape(1)
    return labels(arr, count, num_classes, name)


def patch_size(size: Any, image_hw: tuple[int, ...], name: str = "size") -> int:
    """Returns ``size`` as an int in ``[1, min(H, W)]`` for images of ``[H, W]``."""
    size = positive_int(size, name)
    if size > min(image_hw[:2]):
        raise ValueError(
            f"{name} must be <= min(H, W) = {min(image_hw[:2])}, got {size}"
        )
    return size


def num_logits(fn: Any, images: Any, name: str) -> int:
    """K for a classifier ``fn`` mapping ``[N, H, W, C]`` to logits ``[N, K]``,
    from its output shape on one image of ``images`` ``[B, H, W, C]`` (traced
    only: nothing is computed)."""
    one = jax.ShapeDtypeStruct((1,) + tuple(images.shape[1:]), np.float32)
    shape = jax.eval_shape(fn, one).shape
    if len(shape) != 2 or shape[0] != 1:
        raise ValueError(f"{name} must map [N, H, W, C] to [N, K], got {shape}")
    return int(shape[1])


def mesh_with_axis(mesh: Any, axis: str | None = None, name: str = "mesh") -> Any:
    """Returns ``mesh`` if it is a ``jax.sharding.Mesh`` (with the axis ``axis``,
    unless that is None)."""
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(
            f"{name} must be a jax.sharding.Mesh, got {type(mesh).__name__}"
        )
    if axis is not None and axis not in mesh.axis_names:
        raise TypeError(f"{name} must be a jax Mesh with a {axis!r} axis")
    return mesh


def image_or_batch(x: Any, name: str = "x") -> tuple[np.ndarray, bool]:
    """Returns ``(images [B, H, W, C] float32 in [0, 1], x_was_one_image)``."""
    arr = _float_array(x, name)
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be [H, W, C] or [B, H, W, C], got shape {arr.shape}"
        )
    _in_unit_range(arr, name)
    single = arr.ndim == 3
    images = arr[None] if single else arr
    if images.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image")
    return images, single


def mask(m: Any, image_shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Returns ``m`` as a bool ``[H, W]`` array matching ``image_shape[:2]``."""
    if m is None:
        raise TypeError(f"{name} must be an [H, W] array, got None")
    arr = np.asarray(m)
    if arr.shape != tuple(image_shape[:2]):
        raise ValueError(
            f"{name} must have shape [H, W] = {tuple(image_shape[:2])} to match the "
            f"image, got {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be bool or 0/1 numbers, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must hold only 0 and 1 (or bools)")
    return arr.astype(bool)


def positive_float(value: Any, name: str) -> float:
    """Returns ``value`` as a finite float > 0."""
    v = _real(value, name)
    if not v > 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def nonnegative_float(value: Any, name: str) -> float:
    """Returns ``value`` as a finite float >= 0."""
    v = _real(value, name)
    if not v >= 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def unit_float(value: Any, name: str) -> float:
    """Returns ``value`` as a float in [0, 1]."""
    v = _real(value, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def one_of(value: Any, choices: tuple[Any, ...], name: str) -> Any:
    """Returns ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def number_or_word(value: Any, word: str, name: str) -> float | str | None:
    """Returns None, ``word``, or ``value`` as a finite float >= 0."""
    if value is None or value == word:
        return value
    if isinstance(value, str):
        raise ValueError(
            f"{name} must be None, a number >= 0 or {word!r}, got {value!r}"
        )
    return nonnegative_float(value, name)


def boolean(value: Any, name: str) -> bool:
    """Returns ``value`` if it is a bool (or numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def probability_level(value: Any, name: str = "alpha") -> float:
    """Returns ``value`` as a float strictly inside (0, 1)."""
    v = _real(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return v


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


SEED_MAX = 2**32 - 1


def seed(value: Any, name: str = "seed") -> int:
    """Returns ``value`` as an int seed in [0, 2**32 - 1] (bools are refused).

    Refused here rather than where a key is first made: a seed past int64
    passed every check and failed once the run directory was written.
    """
    value = positive_int(value, name, minimum=0)
    if value > SEED_MAX:
        raise ValueError(f"{name} must be <= 2**32 - 1 = {SEED_MAX}, got {value}")
    return value


def typed_key(key: Any, name: str = "key") -> jax.Array:
    """Returns ``key`` after checking it is one typed key from ``jax.random.key``."""
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(
        key.dtype, jax.dtypes.prng_key
    )
    if not typed:
        raise TypeError(f"{name} must be a typed PRNG key from jax.random.key(seed)")
    if key.shape != ():
        raise ValueError(f"{name} must be a single key, got shape {key.shape}")
    return key


def prng_key(key: Any, name: str = "key") -> jax.Array:
    """Returns one typed PRNG key; a raw ``uint32[2]`` key is wrapped (legacy)."""
    if not isinstance(key, jax.Array):
        raise TypeError(f"{name} must be a jax.random.key, got {type(key).__name__}")
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != (2,) or key.dtype != np.uint32:
            raise TypeError(f"{name} must be a typed key from jax.random.key(seed)")
        key = jax.random.wrap_key_data(key)
    if key.shape != ():
        raise ValueError(f"{name} must be a single key, got shape {key.shape}")
    return key


def callable_pytree(fn: Any, name: str) -> jax.tree_util.Partial:
    """``fn`` as a ``Partial`` (a pytree that crosses jit), if callable."""
    if isinstance(fn, jax.tree_util.Partial):
        return fn
    callable_(fn, name)
    return jax.tree_util.Partial(fn)


def callable_(fn: Any, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _real(value: Any, name: str) -> float:
    """A real number: a Python or numpy scalar, or a concrete 0-d numpy or jax
    array (``jnp.float32(0.5)``); bools, tracers and other types are refused."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete number here, not a traced value")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        array = isinstance(value, (np.ndarray, jax.Array))
        if not (array and value.ndim == 0 and value.dtype != bool):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        if not np.issubdtype(value.dtype, np.number):
            raise TypeError(f"{name} must be a real number, got dtype {value.dtype}")
    return float(value)


def _float_array(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete array, not a traced value")
    arr = np.asarray(x)
    # jnp's dtype tree knows bfloat16 (an ml_dtypes type numpy calls no float).
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a float array in [0, 1], got dtype {arr.dtype}"
        )
    return arr.astype(np.float32, copy=False)


def _in_unit_range(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        # Enough digits that a value just outside (1.0001) is not rounded to 1.
        low, high = float(arr.min()), float(arr.max())
        raise ValueError(
            f"{name} must have values in [0, 1], got values from {low:.8g} to "
            f"{high:.8g}"
        )


def is_traced(x: Any) -> bool:
    """Whether ``x`` is a tracer (inside ``jit``/``vmap``/``grad``): its values
    are unknown, so only its shape and dtype can be checked."""
    return isinstance(x, jax.core.Tracer)


def traced_image(x: Any, name: str = "x") -> jax.Array:
    """Trace-time checks of one image ``[H, W, C]`` (rank, empty axes, a float
    dtype; no value is read, so ``x`` may be a tracer); returns it as float32."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        raise TypeError(f"{name} must be a float array in [0, 1], got dtype {x.dtype}")
    if len(x.shape) != 3:
        raise ValueError(f"{name} must be one image [H, W, C], got shape {x.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"{name} has an empty axis: shape {x.shape}")
    return x.astype(jax.numpy.float32)


def device_image_or_batch(x: Any, name: str = "x") -> tuple[jax.Array, bool]:
    """``(x as float32 [H, W, C] or [B, H, W, C], x_was_one_image)`` for a device
    function. Rank, empty axes and a float dtype are checked always (at trace
    time); values (finite, in [0, 1]) only when ``x`` is concrete, since a
    tracer's values are unknown."""
    if not is_traced(x):
        images_, single = image_or_batch(x, name)
        return jax.numpy.asarray(images_[0] if single else images_), single
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        raise TypeError(f"{name} must be a float array in [0, 1], got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be [H, W, C] or [B, H, W, C], got shape {x.shape}"
        )
    if min(x.shape) < 1:
        raise ValueError(f"{name} has an empty axis: shape {x.shape}")
    return x.astype(jax.numpy.float32), x.ndim == 3


def device_labels(
    y: Any, shape: tuple[int, ...], num_classes: int, name: str = "y"
) -> jax.Array:
    """``y`` as int32 labels of ``shape`` (``()`` for one image, ``(B,)`` for a
    batch). Dtype and shape are checked always (at trace time); the range
    ``[0, num_classes)`` only when ``y`` is concrete."""
    arr = y if is_traced(y) else np.asarray(y)
    if not jax.numpy.issubdtype(arr.dtype, jax.numpy.integer):
        raise TypeError(f"{name} must be integer labels, got dtype {arr.dtype}")
    if tuple(arr.shape) != tuple(shape):
        want = "be a scalar for one image" if shape == () else f"have shape {shape}"
        raise ValueError(f"{name} must {want}, got shape {tuple(arr.shape)}")
    if not is_traced(arr) and arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {arr}")
    return jax.numpy.asarray(arr, jax.numpy.int32)
