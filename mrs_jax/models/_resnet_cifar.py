"""CIFAR-style ResNets (He et al. 2016, section 4.2; used by Cohen et al. 2019).

Three stages of 16, 32 and 64 channels (times ``width``), ``(depth - 2) / 6`` basic
blocks per stage, stride 2 at the start of stages 2 and 3, global average pooling.
ResNet-20, -56 and -110 are ``depth`` 20, 56 and 110. Shortcuts that change shape use
a 1x1 convolution with batch norm (option B).
"""

from collections.abc import Sequence

import jax
from flax import nnx

from mrs_jax.models._normalize import CIFAR10_MEAN, CIFAR10_STD, Normalize


class BasicBlock(nnx.Module):
    """Two 3x3 conv-BN layers with an identity or 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(
            c_in, c_out, (3, 3), strides=stride, use_bias=False, rngs=rngs
        )
        self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(
            c_out, momentum=0.9, scale_init=nnx.initializers.zeros, rngs=rngs
        )
        if stride != 1 or c_in != c_out:
            self.proj = nnx.Conv(
                c_in, c_out, (1, 1), strides=stride, use_bias=False, rngs=rngs
            )
            self.proj_bn = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        else:
            self.proj = None
            self.proj_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return nnx.relu(y + shortcut)


class CifarResNet(nnx.Module):
    """CIFAR ResNet of depth ``6n + 2``.

    Args:
        num_classes: number of output logits K.
        depth: total depth; ``(depth - 2)`` must be a positive multiple of 6.
        width: channel multiplier on (16, 32, 64).
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        clamp: clip inputs to [0, 1] first (see :class:`Normalize`).
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        depth: int = 20,
        width: int = 1,
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        clamp: bool = False,
        rngs: nnx.Rngs,
    ):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1; got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}")
        blocks_per_stage = (depth - 2) // 6
        self.normalize = Normalize(mean, std, clamp=clamp)
        c = 16 * width
        self.stem = nnx.Conv(in_channels, c, (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(c, momentum=0.9, rngs=rngs)
        blocks = []
        c_in = c
        for stage, channels in enumerate((16 * width, 32 * width, 64 * width)):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, channels, stride, rngs=rngs))
                c_in = channels
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = nnx.relu(self.stem_bn(self.stem(self.normalize(images))))
        for block in self.blocks:
            x = block(x)
        return x

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.head(self.features(images).mean(axis=(1, 2)))
