"""Wide ResNets (Zagoruyko and Komodakis 2016), e.g. WRN-28-10.

Pre-activation basic blocks; a 16-channel stem, then three stages of 16k, 32k and 64k
channels with ``(depth - 4) / 6`` blocks each, stride 2 at stages 2 and 3, a final
BN-ReLU, global average pooling and a linear head. No dropout.
"""

from collections.abc import Sequence

import jax
from flax import nnx

from mrs_jax.models._normalize import CIFAR10_MEAN, CIFAR10_STD, Normalize


class WideBlock(nnx.Module):
    """Pre-activation block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        self.bn1 = nnx.BatchNorm(c_in, momentum=0.9, rngs=rngs)
        self.conv1 = nnx.Conv(
            c_in, c_out, (3, 3), strides=stride, use_bias=False, rngs=rngs
        )
        self.bn2 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        if stride != 1 or c_in != c_out:
            self.proj = nnx.Conv(
                c_in, c_out, (1, 1), strides=stride, use_bias=False, rngs=rngs
            )
        else:
            self.proj = None

    def __call__(self, x: jax.Array) -> jax.Array:
        pre = nnx.relu(self.bn1(x))
        y = self.conv1(pre)
        y = self.conv2(nnx.relu(self.bn2(y)))
        shortcut = x if self.proj is None else self.proj(pre)
        return y + shortcut


class WideResNet(nnx.Module):
    """WRN-``depth``-``widen``.

    Args:
        num_classes: number of output logits K.
        depth: total depth; ``depth - 4`` must be a positive multiple of 6.
        widen: widening factor k.
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        depth: int = 28,
        widen: int = 10,
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        rngs: nnx.Rngs,
    ):
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1; got {depth}")
        if widen < 1:
            raise ValueError(f"widen must be >= 1; got {widen}")
        blocks_per_stage = (depth - 4) // 6
        self.normalize = Normalize(mean, std)
        self.stem = nnx.Conv(in_channels, 16, (3, 3), use_bias=False, rngs=rngs)
        blocks = []
        c_in = 16
        for stage, channels in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(WideBlock(c_in, channels, stride, rngs=rngs))
                c_in = channels
        self.blocks = nnx.List(blocks)
        self.final_bn = nnx.BatchNorm(c_in, momentum=0.9, rngs=rngs)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = self.stem(self.normalize(images))
        for block in self.blocks:
            x = block(x)
        return nnx.relu(self.final_bn(x))

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.head(self.features(images).mean(axis=(1, 2)))
