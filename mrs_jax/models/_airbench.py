"""A CIFAR network of airbench94's shape (Keller Jordan's fast CIFAR-10 recipe).

A frozen 2x2 whitening convolution (``2 * C * 4`` channels, or twice
``whiten_directions``: the eigenvectors of the covariance of 2x2 training
patches, scaled by their inverse square roots, and their negatives; only its
bias trains, for the first epochs), GELU, three groups ``conv 3x3 -> 2x2 max
pool -> BN -> GELU -> conv 3x3 -> BN -> GELU`` of 64, 256 and 256 channels, a
global max pool (airbench's 3x3 pool of the 3x3 map of a 32x32 image) and a
bias-free linear head scaled by ``1/9``. The convolutions start as identities
on their first input channels (dirac initialisation); BatchNorm has no trained
scale. The whitening weights come from data: :meth:`AirbenchNet.init_whitening`
(the trainer calls it with ``TrainConfig.whiten_examples`` training images).
Facts and figures from the public airbench94 description; the code is this
project's.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mrs_jax.models._normalize import CIFAR10_MEAN, CIFAR10_STD, Normalize

WHITEN_SIZE = 2
BN_MOMENTUM = 0.6  # running = 0.6 * running + 0.4 * batch
BN_EPSILON = 1e-12
HEAD_SCALE = 1 / 9
NO_VARIANCE = 1e-9  # an eigenvalue under this share of the largest: no variance


def _dirac(conv: nnx.Conv) -> None:
    """Sets the first ``in_features`` output channels to the identity map."""
    kernel = conv.kernel[...]
    height, width, c_in, c_out = kernel.shape
    identity = min(c_in, c_out)
    eye = jnp.zeros((height, width, c_in, identity), kernel.dtype)
    centre = jnp.eye(c_in, identity, dtype=kernel.dtype)
    eye = eye.at[height // 2, width // 2].set(centre)
    conv.kernel[...] = kernel.at[..., :identity].set(eye)


def _norm(
    channels: int, momentum: float, epsilon: float, scale: bool, rngs: nnx.Rngs
) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        channels,
        use_scale=scale,
        momentum=momentum,
        epsilon=epsilon,
        rngs=rngs,
    )


class AirbenchGroup(nnx.Module):
    """conv -> max pool -> BN -> GELU -> conv -> BN -> GELU; halves H and W."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        bn_momentum: float,
        bn_epsilon: float,
        bn_scale: bool,
        dirac: bool,
        rngs: nnx.Rngs,
    ):
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.norm1 = _norm(c_out, bn_momentum, bn_epsilon, bn_scale, rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.norm2 = _norm(c_out, bn_momentum, bn_epsilon, bn_scale, rngs)
        if dirac:
            _dirac(self.conv1)
            _dirac(self.conv2)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(self.conv1(x), (2, 2), strides=(2, 2))
        x = nnx.gelu(self.norm1(x), approximate=False)
        return nnx.gelu(self.norm2(self.conv2(x)), approximate=False)


class AirbenchNet(nnx.Module):
    """Whitening conv, three groups, max pool and a scaled linear head.

    Args:
        num_classes: number of output logits K.
        widths: channels of the three groups.
        in_channels: C of the input images.
        mean, std: per-channel normalisation applied first.
        clamp: clip inputs to [0, 1] first (see :class:`Normalize`).
        bn_momentum: BatchNorm's running-statistics momentum (airbench: 0.6 at
            batch 1024; a smaller batch wants a larger one).
        bn_epsilon: added to BatchNorm's variance (airbench: 1e-12). A
            larger one bounds how far a channel of near-constant activations
            is amplified (``cifar10_airbench_drs``: band ablations).
        whiten_directions: how many eigen-directions of the 2x2 patches the
            whitening keeps, the largest first (``2 *`` this many channels);
            None keeps all ``C * 4``. Fewer for inputs that vary in fewer
            directions, such as the ``(x, 1 - x)`` encoding of derandomized
            smoothing: a direction without variance would give a channel
            that only carries rounding error, which BatchNorm then amplifies.
        bn_scale: give BatchNorm a trained scale (airbench freezes it at 1;
            ``True`` is the ablation row; the trainer puts it with the biases).
        dirac: start each convolution as the identity on its first input
            channels (airbench's dirac initialisation); ``False`` keeps the
            default random initialisation (the ablation row).
        rngs: parameter initialisation.

    ``features``/``head`` split the network for Grad-CAM.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        widths: Sequence[int] = (64, 256, 256),
        in_channels: int = 3,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        clamp: bool = False,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        bn_scale: bool = False,
        dirac: bool = True,
        whiten_directions: int | None = None,
        rngs: nnx.Rngs,
    ):
        widths = tuple(widths)
        if not 0 <= bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1); got {bn_momentum}")
        if not bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0; got {bn_epsilon}")
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be 3 positive ints; got {widths}")
        for name, flag in (("bn_scale", bn_scale), ("dirac", dirac)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool; got {flag!r}")
        self.normalize = Normalize(mean, std, clamp=clamp)
        patch_size = in_channels * WHITEN_SIZE**2
        if whiten_directions is None:
            whiten_directions = patch_size
        if isinstance(whiten_directions, bool) or not isinstance(
            whiten_directions, int
        ):
            raise TypeError(
                f"whiten_directions must be an int or None; got {whiten_directions!r}"
            )
        if not 1 <= whiten_directions <= patch_size:
            raise ValueError(
                f"whiten_directions must be in [1, C * 4] = [1, {patch_size}]; "
                f"got {whiten_directions}"
            )
        whiten_width = 2 * whiten_directions
        self.whiten = nnx.Conv(
            in_channels,
            whiten_width,
            (WHITEN_SIZE, WHITEN_SIZE),
            padding="VALID",
            use_bias=True,
            rngs=rngs,
        )
        self.groups = nnx.List(
            [
                AirbenchGroup(
                    a,
                    b,
                    bn_momentum=bn_momentum,
                    bn_epsilon=bn_epsilon,
                    bn_scale=bn_scale,
                    dirac=dirac,
                    rngs=rngs,
                )
                for a, b in zip((whiten_width, *widths[:-1]), widths, strict=True)
            ]
        )
        self.head = nnx.Linear(widths[-1], num_classes, use_bias=False, rngs=rngs)

    def init_whitening(self, images: np.ndarray, epsilon: float = 5e-4) -> None:
        """Sets the whitening kernel from ``images: [N, H, W, C]`` in [0, 1].

        The kernel's filters are the eigenvectors of the covariance of all 2x2
        patches of the normalised images, each divided by the square root of
        its eigenvalue plus ``epsilon``, and then the same filters negated; the
        largest ``whiten_directions`` of them.

        Raises:
            ValueError: ``images`` of other channels, or patches that vary in
                fewer directions than the layer keeps (a kept direction's
                eigenvalue under ``1e-9`` of the largest).
        """
        images = np.asarray(images, np.float32)
        if (
            images.ndim != 4
            or images.shape[-1] != self.whiten.kernel[...].shape[-2]
        ):
            raise ValueError(
                "images must be [N, H, W, C] with the model's channels; got "
                f"{images.shape}"
            )
        x = np.asarray(self.normalize(jnp.asarray(images)))
        s = WHITEN_SIZE
        _, height, width, c = x.shape
        rows, cols = height - s + 1, width - s + 1
        patches = np.stack(
            [x[:, i : rows + i, j : cols + j] for i in range(s) for j in range(s)],
            axis=-2,
        )  # [N, H', W', s*s, C], taps in (row, col) order
        flat = patches.reshape(-1, s * s * c).astype(np.float64)
        covariance = flat.T @ flat / len(flat)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        kept = self.whiten.kernel[...].shape[-1] // 2
        order = np.argsort(eigenvalues)[::-1][:kept]
        varied = int((eigenvalues > NO_VARIANCE * eigenvalues.max()).sum())
        if varied < kept:
            raise ValueError(
                f"the images' 2x2 patches vary in {varied} directions, but the "
                f"whitening keeps {kept}: give whiten_directions={varied}"
            )
        scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + epsilon)
        filters = scaled.reshape(s, s, c, -1)  # [kh, kw, C, kept]
        kernel = np.concatenate([filters, -filters], axis=-1).astype(np.float32)
        self.whiten.kernel[...] = jnp.asarray(kernel)

    def features(self, images: jax.Array) -> jax.Array:
        """The last feature map ``[B, h, w, F]`` (what Grad-CAM weighs)."""
        x = nnx.gelu(self.whiten(self.normalize(images)), approximate=False)
        for group in self.groups:
            x = group(x)
        return x

    def logits_from_features(self, features: jax.Array) -> jax.Array:
        """Global max pool, the linear head and its ``1/9`` scale."""
        return self.head(features.max(axis=(1, 2))) * HEAD_SCALE

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps ``images: [B, H, W, C]`` in [0, 1] to logits ``[B, K]``."""
        return self.logits_from_features(self.features(images))
