"""Mean/std normalisation as the first layer of every model.

Keeping normalisation inside the model means noise, masks, patches and radii all live
in [0, 1] pixel space (MRS_SPEC section 1; locuslab/smoothing ``NormalizeLayer``).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)


class Normalize(nnx.Module):
    """Per-channel ``(x - mean) / std``; mean and std are fixed, not trained.

    With ``clamp`` the input is first clipped to [0, 1]: noise of std 7 inside a
    square (the paper's CIFAR-10 setting) otherwise swamps BatchNorm's statistics
    (``docs/models.md``). The clamp is part of the base classifier f, so Theorem 1
    still holds for the classifier smoothed around f.

    Args:
        mean: one value per channel.
        std: one positive value per channel.
        clamp: clip inputs to [0, 1] before normalising.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], clamp: bool = False
    ):
        mean = tuple(float(m) for m in mean)
        std = tuple(float(s) for s in std)
        if len(mean) != len(std) or not mean:
            raise ValueError(
                f"mean and std need the same, non-zero length; got {len(mean)} and "
                f"{len(std)}"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive; got {std}")
        # Plain tuples are static attributes: they stay out of the parameter state.
        self.mean = mean
        self.std = std
        self.clamp = bool(clamp)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Normalises ``images: [B, H, W, C]`` float in [0, 1]."""
        if images.ndim != 4 or images.shape[-1] != len(self.mean):
            raise ValueError(
                f"images must be [B, H, W, {len(self.mean)}]; got {images.shape}"
            )
        if self.clamp:
            images = jnp.clip(images, 0.0, 1.0)
        mean = jnp.asarray(self.mean, images.dtype)
        std = jnp.asarray(self.std, images.dtype)
        return (images - mean) / std
