"""Saliency maps and the most salient s x s window (the paper's "Grad-CAM" setting).

Section 4.2 places the smoothing mask on "the region with the highest [Grad-CAM]
activation value for the s x s size". `gradcam` needs the model split into a feature
extractor and a head; `input_gradient_saliency` is a fallback for classifiers that
offer no such split. `best_window` turns either map into a window position.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mrs_jax import _checks


def _images_and_classes(x: Any, class_index: Any) -> tuple[jax.Array, jax.Array, bool]:
    """Validates x ([H,W,C] or [B,H,W,C] in [0,1]) and class_index (int or [B])."""
    images, single = _checks.image_or_batch(x)
    classes = np.asarray(class_index)
    if not np.issubdtype(classes.dtype, np.integer):
        raise TypeError(f"class_index must be integer, got dtype {classes.dtype}")
    if single and classes.ndim != 0:
        raise ValueError(
            f"class_index must be a scalar for one image, got {classes.shape}"
        )
    if not single and classes.shape != (images.shape[0],):
        raise ValueError(
            f"class_index must have shape ({images.shape[0]},), got {classes.shape}"
        )
    if classes.min() < 0:
        raise ValueError(f"class_index must be >= 0, got {classes}")
    return (
        jnp.asarray(images, jnp.float32),
        jnp.asarray(classes.reshape(-1), jnp.int32),
        single,
    )


def _check_num_classes(logits_shape: tuple[int, ...], classes: jax.Array, name: str):
    if len(logits_shape) != 2:
        raise ValueError(f"{name} must return logits [B, K], got shape {logits_shape}")
    if int(classes.max()) >= logits_shape[1]:
        raise ValueError(f"class_index must be < K = {logits_shape[1]}")


@jax.jit
def _gradcam_batch(features_fn, head_fn, images, classes):
    features = features_fn(images)  # [B, h, w, F]

    def class_score(feats):
        logits = head_fn(feats)
        return jnp.take_along_axis(logits, classes[:, None], axis=1).sum()

    # Batch entries are independent, so the gradient of the summed score gives each
    # image's own d score / d A.
    grads = jax.grad(class_score)(features)
    alpha = grads.mean(axis=(1, 2))  # [B, F]
    cam = jax.nn.relu(jnp.einsum("bhwf,bf->bhw", features, alpha))
    height, width = images.shape[1:3]
    if cam.shape[1:] != (height, width):
        cam = jax.image.resize(cam, (cam.shape[0], height, width), "bilinear")
    # Bilinear weights are non-negative; the clip only removes rounding below zero.
    return jnp.maximum(cam, 0.0)


def gradcam(
    features_fn: Callable[[jax.Array], jax.Array],
    head_fn: Callable[[jax.Array], jax.Array],
    x: Any,
    class_index: Any,
) -> jax.Array:
    """Grad-CAM (Selvaraju et al. 2017) for a model split as head_fn(features_fn(x)).

    `cam = ReLU(sum_k alpha_k A_k)` with A = features_fn(x) and `alpha_k` the spatial
    mean of d logit[class_index] / d A_k, upsampled bilinearly to the image size.

    Args:
      features_fn: images [B, H, W, C] -> feature map [B, h, w, F] (e.g. the last
        convolutional block). Plain function or `jax.tree_util.Partial`.
      head_fn: features [B, h, w, F] -> logits [B, K].
      x: [H, W, C] or [B, H, W, C] float in [0, 1].
      class_index: class to explain: int, or [B] ints for a batch.

    Returns:
      [H, W] (or [B, H, W]) float32 heatmap, non-negative.
    """
    features_fn = _checks.callable_pytree(features_fn, "features_fn")
    head_fn = _checks.callable_pytree(head_fn, "head_fn")
    images, classes, single = _images_and_classes(x, class_index)
    feature_shape = jax.eval_shape(features_fn, images).shape
    if len(feature_shape) != 4 or feature_shape[0] != images.shape[0]:
        raise ValueError(
            f"features_fn must return [B, h, w, F] features, got shape {feature_shape}"
        )
    logits_shape = jax.eval_shape(
        head_fn, jax.ShapeDtypeStruct(feature_shape, jnp.float32)
    ).shape
    _check_num_classes(logits_shape, classes, "head_fn")
    cam = _gradcam_batch(features_fn, head_fn, images, classes)
    return cam[0] if single else cam


@jax.jit
def _saliency_batch(classify, images, classes):
    def class_score(imgs):
        logits = classify(imgs)
        return jnp.take_along_axis(logits, classes[:, None], axis=1).sum()

    return jnp.abs(jax.grad(class_score)(images)).sum(axis=-1)


def input_gradient_saliency(
    classify: Callable[[jax.Array], jax.Array], x: Any, class_index: Any
) -> jax.Array:
    """Input-gradient saliency (Simonyan et al. 2014), for classifiers without a split.

    `saliency[i, j] = sum_c |d logit[class_index] / d x[i, j, c]|`.

    Args:
      classify: images [B, H, W, C] -> logits [B, K]; plain function or Partial.
      x: [H, W, C] or [B, H, W, C] float in [0, 1].
      class_index: int, or [B] ints for a batch.

    Returns:
      [H, W] (or [B, H, W]) float32, non-negative.
    """
    classify = _checks.callable_pytree(classify, "classify")
    images, classes, single = _images_and_classes(x, class_index)
    _check_num_classes(jax.eval_shape(classify, images).shape, classes, "classify")
    saliency = _saliency_batch(classify, images, classes)
    return saliency[0] if single else saliency


@functools.partial(jax.jit, static_argnames="size")
def _window_sums(heatmap: jax.Array, size: int) -> jax.Array:
    """[H, W] -> [H - s + 1, W - s + 1] sums over every s x s window."""
    return lax.reduce_window(heatmap, 0.0, lax.add, (size, size), (1, 1), "VALID")


def best_window(heatmap: Any, size: int) -> tuple[int, int]:
    """Top-left of the s x s window with the greatest summed heatmap value.

    Window sums are a box filter (`lax.reduce_window`, every window summed in the same
    order, so equal windows tie exactly); ties go to the first window in row-major
    order.

    Args:
      heatmap: [H, W] real array (e.g. `gradcam` or `input_gradient_saliency`).
      size: window side s, 1 <= s <= min(H, W).

    Returns:
      (top, left) Python ints; the window covers rows top..top+s-1, columns
      left..left+s-1.
    """
    heat = np.asarray(heatmap)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be [H, W], got shape {heat.shape}")
    if not (
        np.issubdtype(heat.dtype, np.floating) or np.issubdtype(heat.dtype, np.integer)
    ):
        raise TypeError(f"heatmap must be real, got dtype {heat.dtype}")
    if not np.all(np.isfinite(heat)):
        raise ValueError("heatmap must be finite")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if not 1 <= size <= min(heat.shape):
        raise ValueError(f"size must be in [1, {min(heat.shape)}], got {size}")
    sums = np.asarray(_window_sums(jnp.asarray(heat, jnp.float32), int(size)))
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)
