"""Saliency maps and the most salient s x s window (the paper's "Grad-CAM" setting).

Section 4.2 places the smoothing mask on "the region with the highest [Grad-CAM]
activation value for the s x s size". `gradcam` needs the model split into a feature
extractor and a head; `input_gradient_saliency` is a fallback for classifiers that
offer no such split. `best_window` turns either map into a window position.

All three are device functions written for one image: `jax.jit` them and
`jax.vmap` them over images and class indices inside your own code
(``docs/localization.md``, "The Grad-CAM setting").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mrs_jax.core import checks as _checks


def _logits_width(logits_shape: tuple[int, ...], name: str) -> int:
    """K of logits [1, K] (the classifier on one image)."""
    if len(logits_shape) != 2:
        raise ValueError(f"{name} must return logits [B, K], got shape {logits_shape}")
    return int(logits_shape[1])


def _class_indices(class_index: Any, batch_shape: tuple[int, ...], num_classes: int):
    """int32 class indices of ``batch_shape``; range checked only when concrete."""
    return _checks.device_labels(class_index, batch_shape, num_classes, "class_index")


def _map_images(one_image_fn, images: jax.Array, classes: jax.Array, single: bool):
    """``one_image_fn(image, class)`` on one image, or vmapped over a batch."""
    if single:
        return one_image_fn(images, classes)
    return jax.vmap(one_image_fn)(images, classes)


@jax.jit
def _gradcam_one(features_fn, head_fn, image, class_index):
    """[H, W, C], [] -> [H, W] Grad-CAM of one image."""
    features = features_fn(image[None])  # [1, h, w, F]

    def class_score(feats):
        logits = head_fn(feats)
        return jnp.take_along_axis(logits, class_index[None, None], axis=1).sum()

    grads = jax.grad(class_score)(features)
    alpha = grads.mean(axis=(1, 2))  # [1, F]
    cam = jax.nn.relu(jnp.einsum("bhwf,bf->bhw", features, alpha))
    height, width = image.shape[:2]
    if cam.shape[1:] != (height, width):
        cam = jax.image.resize(cam, (cam.shape[0], height, width), "bilinear")
    # Bilinear weights are non-negative; the clip only removes rounding below zero.
    return jnp.maximum(cam, 0.0)[0]


def gradcam(
    features_fn: Callable[[jax.Array], jax.Array],
    head_fn: Callable[[jax.Array], jax.Array],
    x: Any,
    class_index: Any,
) -> jax.Array:
    """Grad-CAM (Selvaraju et al. 2017) for a model split as head_fn(features_fn(x)).

    `cam = ReLU(sum_k alpha_k A_k)` with A = features_fn(x) and `alpha_k` the spatial
    mean of d logit[class_index] / d A_k, upsampled bilinearly to the image size.

    A device function written for one image: `jax.jit` it and `jax.vmap` it over
    `x` and `class_index`. A batch `x` [B, H, W, C] with `class_index` [B] is
    that vmap. Shapes and dtypes are checked at trace time; values (pixels finite
    and in [0, 1], 0 <= class_index < K) only when `x` and `class_index` are
    concrete (an eager call).

    Args:
      features_fn: images [N, H, W, C] -> feature map [N, h, w, F] (e.g. the last
        convolutional block). Plain function or `jax.tree_util.Partial`.
      head_fn: features [N, h, w, F] -> logits [N, K].
      x: [H, W, C] float in [0, 1] (or a batch [B, H, W, C]).
      class_index: class to explain: int [] (or [B] ints for a batch).

    Returns:
      [H, W] (or [B, H, W]) float32 heatmap, non-negative.
    """
    features_fn = _checks.callable_pytree(features_fn, "features_fn")
    head_fn = _checks.callable_pytree(head_fn, "head_fn")
    images, single = _checks.device_image_or_batch(x)
    one = jax.ShapeDtypeStruct((1,) + images.shape[-3:], jnp.float32)
    feature_shape = jax.eval_shape(features_fn, one).shape
    if len(feature_shape) != 4 or feature_shape[0] != 1:
        raise ValueError(
            f"features_fn must return [B, h, w, F] features, got shape {feature_shape}"
        )
    logits_shape = jax.eval_shape(
        head_fn, jax.ShapeDtypeStruct(feature_shape, jnp.float32)
    ).shape
    num_classes = _logits_width(logits_shape, "head_fn")
    classes = _class_indices(class_index, images.shape[:-3], num_classes)
    one_image = functools.partial(_gradcam_one, features_fn, head_fn)
    return _map_images(one_image, images, classes, single)


@jax.jit
def _saliency_one(classify, image, class_index):
    """[H, W, C], [] -> [H, W] input-gradient saliency of one image."""

    def class_score(imgs):
        logits = classify(imgs)
        return jnp.take_along_axis(logits, class_index[None, None], axis=1).sum()

    return jnp.abs(jax.grad(class_score)(image[None])).sum(axis=-1)[0]


def input_gradient_saliency(
    classify: Callable[[jax.Array], jax.Array], x: Any, class_index: Any
) -> jax.Array:
    """Input-gradient saliency (Simonyan et al. 2014), for classifiers without a split.

    `saliency[i, j] = sum_c |d logit[class_index] / d x[i, j, c]|`.

    A device function written for one image, checked as `gradcam` is: shapes
    and dtypes at trace time, values only when the inputs are concrete.

    Args:
      classify: images [N, H, W, C] -> logits [N, K]; plain function or Partial.
      x: [H, W, C] float in [0, 1] (or a batch [B, H, W, C]).
      class_index: int [] (or [B] ints for a batch).

    Returns:
      [H, W] (or [B, H, W]) float32, non-negative.
    """
    classify = _checks.callable_pytree(classify, "classify")
    images, single = _checks.device_image_or_batch(x)
    one = jax.ShapeDtypeStruct((1,) + images.shape[-3:], jnp.float32)
    num_classes = _logits_width(jax.eval_shape(classify, one).shape, "classify")
    classes = _class_indices(class_index, images.shape[:-3], num_classes)
    one_image = functools.partial(_saliency_one, classify)
    return _map_images(one_image, images, classes, single)


@functools.partial(jax.jit, static_argnames="size")
def _best_window(heatmap: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """[H, W] -> (top, left) int32 of the s x s window with the greatest sum."""
    sums = lax.reduce_window(heatmap, 0.0, lax.add, (size, size), (1, 1), "VALID")
    index = jnp.argmax(sums.reshape(-1))  # ties -> first in row-major order
    columns = sums.shape[1]
    return (index // columns).astype(jnp.int32), (index % columns).astype(jnp.int32)


def best_window(heatmap: Any, size: int) -> tuple[Any, Any]:
    """Top-left of the s x s window with the greatest summed heatmap value.

    Window sums are a box filter (`lax.reduce_window`, every window summed in the same
    order, so equal windows tie exactly); ties go to the first window in row-major
    order.

    A device function: `jax.jit` it (with `size` static) and `jax.vmap` it over
    heatmaps. Shape, dtype and `size` are checked at trace time; that the heatmap
    is finite only when it is concrete.

    Args:
      heatmap: [H, W] real array (e.g. `gradcam` or `input_gradient_saliency`).
      size: window side s, 1 <= s <= min(H, W) (static).

    Returns:
      (top, left): the window covers rows top..top+s-1, columns left..left+s-1.
      Python ints for a concrete heatmap (an eager call); int32 scalars [] when
      the heatmap is traced (under jit/vmap).

    Raises:
      ValueError, TypeError: a heatmap that is not a real [H, W] array (or, when
        concrete, not finite), or a bad ``size``.

    Examples:
      >>> import numpy as np
      >>> from mrs_jax.localization import best_window
      >>> heatmap = np.zeros((6, 6))
      >>> heatmap[3:5, 1:3] = 1.0
      >>> best_window(heatmap, 2)
      (3, 1)
    """
    traced = _checks.is_traced(heatmap)
    heat = heatmap if traced else np.asarray(heatmap)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be [H, W], got shape {heat.shape}")
    if not (
        jnp.issubdtype(heat.dtype, jnp.floating)
        or jnp.issubdtype(heat.dtype, jnp.integer)
    ):
        raise TypeError(f"heatmap must be real, got dtype {heat.dtype}")
    if not traced and not np.all(np.isfinite(heat)):
        raise ValueError("heatmap must be finite")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if not 1 <= size <= min(heat.shape):
        raise ValueError(f"size must be in [1, {min(heat.shape)}], got {size}")
    top, left = _best_window(jnp.asarray(heat, jnp.float32), int(size))
    if traced:
        return top, left
    return int(top), int(left)
