"""A fast CIFAR network for CPU training (after Keller Jordan's airbench).

A 3x3 stem, then three blocks of ``conv 3x3 -> 2x2 max pool -> BN -> GELU -> conv
3x3 -> BN -> GELU``, global average pooling and a linear head. Max pooling right
after the first conv of a block keeps three quarters of the block's arithmetic at
the lower resolution, which makes it cheap enough to train on a CPU
(``train/configs/cifar10_cpu.py``; ``docs/models.md``).
"""

from collections.abc import Sequence

import jax
from flax import nnx

from mrs_jax.models._normalize import CIFAR10_MEAN, CIFAR10_STD, Normalize


class ConvGroup(nnx.Module):
    """conv -> max pool -> BN -> GELU -> conv -> BN -> GELU; halves H and W."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(self.conv1(x), (2, 2), strides=(2, 2))
        x = nnx.gelu(self.bn1(x))
        return nnx.gelu(self.bn2(self.conv2(x)))


class FastCNN(nnx.Module):
    """Stem and three conv groups; ``features``/``head`` split for Grad-CAM.

    Args:
        num_classes: number of output logits K.
        widths: channels of the stem and of the three groups.
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        clamp: clip inputs to [0, 1] first (see :class:`Normalize`).
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        widths: Sequence[int] = (32, 64, 128, 256),
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        clamp: bool = False,
        rngs: nnx.Rngs,
    ):
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive ints; got {widths}")
        self.normalize = Normalize(mean, std, clamp=clamp)
        self.stem = nnx.Conv(in_channels, widths[0], (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(widths[0], momentum=0.9, rngs=rngs)
        self.groups = nnx.List(
            [
                ConvGroup(a, b, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = nnx.gelu(self.stem_bn(self.stem(self.normalize(images))))
        for group in self.groups:
            x = group(x)
        return x

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.head(self.features(images).mean(axis=(1, 2)))
