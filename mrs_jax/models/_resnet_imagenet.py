"""ImageNet ResNets with bottleneck blocks (He et al. 2016), e.g. ResNet-50.

7x7/2 stem conv, 3x3/2 max pool, four stages of bottleneck blocks (1x1, 3x3, 1x1 with
expansion 4) at 64, 128, 256 and 512 base channels (times ``width / 64``), stride 2 in
the 3x3 conv of the first block of stages 2-4, global average pooling, linear head.
"""

from collections.abc import Sequence

import jax
from flax import nnx

from mrs_jax.models._normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a projection shortcut."""

    def __init__(self, c_in: int, channels: int, stride: int, *, rngs: nnx.Rngs):
        c_out = 4 * channels
        self.conv1 = nnx.Conv(c_in, channels, (1, 1), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(
            channels, channels, (3, 3), strides=stride, use_bias=False, rngs=rngs
        )
        self.bn2 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.conv3 = nnx.Conv(channels, c_out, (1, 1), use_bias=False, rngs=rngs)
        # Zero-initialised last BN scale: each block starts as the identity.
        self.bn3 = nnx.BatchNorm(
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
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return nnx.relu(y + shortcut)


class ImageNetResNet(nnx.Module):
    """Bottleneck ResNet; ``stage_sizes=(3, 4, 6, 3)`` is ResNet-50.

    Args:
        num_classes: number of output logits K.
        stage_sizes: bottleneck blocks in each of the four stages.
        width: base channels of the first stage (64 for ResNet-50).
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        stage_sizes: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        in_channels: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        rngs: nnx.Rngs,
    ):
        if len(stage_sizes) == 0 or any(int(s) < 1 for s in stage_sizes):
            raise ValueError(f"stage_sizes must be positive ints; got {stage_sizes}")
        if width < 1:
            raise ValueError(f"width must be >= 1; got {width}")
        self.normalize = Normalize(mean, std)
        self.stem = nnx.Conv(
            in_channels, width, (7, 7), strides=2, use_bias=False, rngs=rngs
        )
        self.stem_bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        blocks = []
        c_in = width
        for stage, size in enumerate(stage_sizes):
            channels = width * 2**stage
            for i in range(int(size)):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Bottleneck(c_in, channels, stride, rngs=rngs))
                c_in = 4 * channels
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = nnx.relu(self.stem_bn(self.stem(self.normalize(images))))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x)
        return x

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.head(self.features(images).mean(axis=(1, 2)))
