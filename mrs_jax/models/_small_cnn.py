"""A small, fast CNN: the default base classifier for the embedded digits data."""

from collections.abc import Sequence

import jax
from flax import nnx

from mrs_jax.models._normalize import DIGITS_MEAN, DIGITS_STD, Normalize


class SmallCNN(nnx.Module):
    """Conv(3x3)-BN-ReLU blocks with 2x2 max pooling, global average pool, linear.

    Args:
        num_classes: number of output logits K.
        widths: channels of each conv block; each block halves H and W.
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        clamp: clip inputs to [0, 1] first (see :class:`Normalize`).
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        widths: Sequence[int] = (32, 64, 128),
        in_channels: int = 3,
        mean: Sequence[float] = DIGITS_MEAN,
        std: Sequence[float] = DIGITS_STD,
        clamp: bool = False,
        rngs: nnx.Rngs,
    ):
        self.normalize = Normalize(mean, std, clamp=clamp)
        convs, norms = [], []
        c_in = in_channels
        for width in widths:
            convs.append(nnx.Conv(c_in, width, (3, 3), use_bias=False, rngs=rngs))
            norms.append(nnx.BatchNorm(width, momentum=0.9, rngs=rngs))
            c_in = width
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = self.normalize(images)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = nnx.relu(norm(conv(x)))
            x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return x

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.head(self.features(images).mean(axis=(1, 2)))
