"""Inference-time BatchNorm folding: each eval-mode BatchNorm goes into its conv.

In eval mode a BatchNorm after a convolution is a per-channel affine map,
``bn(y) = s * y + (beta - s * mean)`` with ``s = gamma / sqrt(var + eps)``, so
the convolution ``y = conv(x, W)`` followed by it equals one convolution with
kernel ``W * s`` (scaled along the output channels) and bias
``beta - s * mean``. The folded model computes the same logits up to float
rounding, with one fewer elementwise pass per layer and no ``rsqrt`` at run
time.

A BatchNorm that follows a max pool (``FastCNN``'s ``conv -> pool -> bn``)
cannot go into the conv when some ``s < 0`` (a max pool does not commute with a
negative scale); it becomes a precomputed per-channel :class:`ChannelAffine`.

With ``winograd=2`` (or 4) every 3x3, stride-1, SAME convolution on maps whose
sides are multiples of 2 (or 4) also runs as Winograd F(2x2, 3x3) (or F(4x4,
3x3); Lavin & Gray 2016): 16 multiplies per 2x2 output tile instead of 36 (36
per 4x4 tile instead of 144), the same result up to float rounding.

Supported families: ``CifarResNet``, ``ImageNetResNet``, ``FastCNN`` and
``SmallCNN`` (every conv there is followed by its BatchNorm). ``WideResNet`` is
pre-activation (BN before conv) and is refused.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.tree_util import Partial

from mrs_jax import _checks
from mrs_jax.models.classifier import _apply_for
from mrs_jax.models.fast_cnn import ConvGroup, FastCNN
from mrs_jax.models.resnet_cifar import BasicBlock, CifarResNet
from mrs_jax.models.resnet_imagenet import Bottleneck, ImageNetResNet
from mrs_jax.models.small_cnn import SmallCNN

# (conv attribute, BatchNorm attribute) pairs where the BN directly follows the
# conv, per module type.
_PAIRS = {
    CifarResNet: (("stem", "stem_bn"),),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2"), ("proj", "proj_bn")),
    ImageNetResNet: (("stem", "stem_bn"),),
    Bottleneck: (
        ("conv1", "bn1"),
        ("conv2", "bn2"),
        ("conv3", "bn3"),
        ("proj", "proj_bn"),
    ),
    FastCNN: (("stem", "stem_bn"),),
    ConvGroup: (("conv2", "bn2"),),
}
_FAMILIES = (CifarResNet, ImageNetResNet, FastCNN, SmallCNN)


class Identity(nnx.Module):
    """Stands where a folded BatchNorm was."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


class ChannelAffine(nnx.Module):
    """``x * scale + shift`` per channel (last axis): an eval-mode BatchNorm
    with its statistics precomputed."""

    def __init__(self, scale: jax.Array, shift: jax.Array):
        self.scale = nnx.Param(scale)
        self.shift = nnx.Param(shift)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale[...] + self.shift[...]


def fold_batchnorm(model: nnx.Module, *, winograd: int = 0) -> nnx.Module:
    """A copy of ``model`` with every eval-mode BatchNorm folded away.

    Args:
      model: a ``CifarResNet``, ``ImageNetResNet``, ``FastCNN`` or ``SmallCNN``;
        its BatchNorms' running statistics are used whatever mode it is in.
      winograd: 0 for direct convolutions, or the output tile side (2 or 4) of
        Winograd F(tile x tile, 3x3) for the 3x3 stride-1 convolutions.

    Returns:
      A new ``nnx.Module`` of the same class whose convolutions carry the folded
      scale (in the kernel) and shift (as a bias); each folded BatchNorm is an
      :class:`Identity`. ``model`` is not changed. Its logits equal the eval-mode
      logits of ``model`` up to float rounding.

    Raises:
      TypeError: ``model`` is not an ``nnx.Module`` of a supported family.
      ValueError: a BatchNorm has non-finite statistics or parameters, or
        ``var + epsilon <= 0``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module; got {type(model).__name__}")
    if not isinstance(model, _FAMILIES):
        names = ", ".join(f.__name__ for f in _FAMILIES)
        raise TypeError(
            f"fold_batchnorm supports {names} (conv followed by BatchNorm); "
            f"got {type(model).__name__}"
        )
    winograd = _checks.one_of(winograd, (0, 2, 4), "winograd")
    folded = nnx.clone(model)
    if winograd:
        for _, conv in nnx.iter_modules(folded):
            if isinstance(conv, nnx.Conv):
                conv.conv_general_dilated = _CONV_FOR_TILE[winograd]
    if isinstance(folded, SmallCNN):
        for i, (conv, norm) in enumerate(zip(folded.convs, folded.norms, strict=True)):
            _fold_into(conv, norm, f"norms[{i}]")
        folded.norms = nnx.List([Identity() for _ in folded.norms])
        return folded
    for path, module in list(nnx.iter_modules(folded)):
        for conv_name, bn_name in _PAIRS.get(type(module), ()):
            conv, norm = getattr(module, conv_name), getattr(module, bn_name)
            if conv is None:  # an identity shortcut has neither
                continue
            _fold_into(conv, norm, _name(path, bn_name))
            setattr(module, bn_name, Identity())
        if isinstance(module, ConvGroup):
            scale, shift = _scale_shift(module.bn1, _name(path, "bn1"))
            module.bn1 = ChannelAffine(scale, shift)
    return folded


def folded_classifier(model: nnx.Module, *, winograd: int = 0) -> Partial:
    """``classify(images [B, H, W, C] in [0, 1]) -> logits [B, K]`` of the
    folded model: a drop-in for :func:`mrs_jax.models.as_classifier` (a
    ``Partial`` whose leaves are the folded weights), for ``sample_counts``,
    ``certify`` and ``predict``.

    Raises:
      TypeError, ValueError: as :func:`fold_batchnorm`.
    """
    graphdef, state = nnx.split(fold_batchnorm(model, winograd=winograd))
    return Partial(_apply_for(graphdef), state)


def _name(path, attribute: str) -> str:
    return ".".join([*(str(p) for p in path), attribute])


def _scale_shift(norm: nnx.BatchNorm, name: str) -> tuple[jax.Array, jax.Array]:
    """``(s, beta - s * mean)`` of an eval-mode BatchNorm, float32."""
    if not isinstance(norm, nnx.BatchNorm):
        raise TypeError(f"{name} must be an nnx.BatchNorm; got {type(norm).__name__}")
    mean = jnp.asarray(norm.mean[...], jnp.float32)
    var = jnp.asarray(norm.var[...], jnp.float32) + norm.epsilon
    gamma = 1.0 if norm.scale is None else norm.scale[...].astype(jnp.float32)
    beta = 0.0 if norm.bias is None else norm.bias[...].astype(jnp.float32)
    pieces = (mean, var, jnp.asarray(gamma), jnp.asarray(beta))
    if not all(bool(jnp.isfinite(p).all()) for p in pieces):
        raise ValueError(f"{name} has non-finite statistics or parameters")
    if not bool((var > 0).all()):
        raise ValueError(f"{name} has var + epsilon <= 0")
    scale = gamma * jax.lax.rsqrt(var)
    return scale, beta - scale * mean


def _fold_into(conv: nnx.Conv, norm: nnx.BatchNorm, name: str) -> None:
    """Scales ``conv``'s kernel and sets its bias so that it computes
    ``norm(conv(x))``."""
    if not isinstance(conv, nnx.Conv):
        raise TypeError(f"the conv before {name} must be an nnx.Conv")
    scale, shift = _scale_shift(norm, name)
    if conv.bias is not None:
        shift = shift + scale * conv.bias[...].astype(jnp.float32)
    kernel = conv.kernel[...]
    conv.kernel = nnx.Param((kernel.astype(jnp.float32) * scale).astype(kernel.dtype))
    conv.bias = nnx.Param(shift.astype(kernel.dtype))
    conv.use_bias = True


# Winograd F(m x m, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A
# for each (m + 2) x (m + 2) input tile d, giving an m x m output tile.
_WINOGRAD = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        (
            (1, 1, 1, 1, 1, 0),
            (0, 1, -1, 2, -2, 0),
            (0, 1, 1, 4, 4, 0),
            (0, 1, -1, 8, -8, 1),
        ),
    ),
}


def _combine(coeffs, items):
    """``sum(c * item)``, skipping zeros and multiplying only where ``|c| != 1``."""
    out = None
    for c, item in zip(coeffs, items, strict=True):
        if c:
            term = item if c == 1 else -item if c == -1 else c * item
            out = term if out is None else out + term
    return out


def winograd_conv3x3(x: jax.Array, kernel: jax.Array, tile: int = 2) -> jax.Array:
    """``x [N, H, W, C]`` convolved with ``kernel [3, 3, C, D]``, stride 1, SAME
    padding, as Winograd F(tile x tile, 3x3): ``[N, H, W, D]``.

    ``tile`` is 2 or 4 and must divide H and W.
    """
    bt, g, at = _WINOGRAD[tile]
    side = tile + 2  # input tile side
    n, height, width, c = x.shape
    d_out = kernel.shape[-1]
    th, tw = height // tile, width // tile
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # tiles[a][b]: element (a, b) of every input tile, [N, th, tw, C].
    tiles = [
        [padded[:, a : a + tile * th : tile, b : b + tile * tw : tile]
         for b in range(side)]
        for a in range(side)
    ]  # fmt: skip
    rows = [
        [_combine(bt[i], [tiles[a][b] for a in range(side)]) for b in range(side)]
        for i in range(side)
    ]
    v = jnp.stack([_combine(bt[j], rows[i]) for i in range(side) for j in range(side)])
    g = jnp.asarray(g, kernel.dtype)
    u = jnp.einsum("ia,abcd,jb->ijcd", g, kernel, g)
    m = jnp.einsum(
        "tpc,tcd->tpd",
        v.reshape(side * side, n * th * tw, c),
        u.reshape(side * side, c, d_out),
    ).reshape(side, side, n, th, tw, d_out)
    half = [
        [_combine(at[i], [m[a, b] for a in range(side)]) for b in range(side)]
        for i in range(tile)
    ]
    y = jnp.stack(
        [
            jnp.stack([_combine(at[j], half[i]) for j in range(tile)])
            for i in range(tile)
        ]
    )  # fmt: skip  [tile (row in tile), tile (column), N, th, tw, D]
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, height, width, d_out)


def _conv_winograd_when_possible(
    lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
    dimension_numbers=None, feature_group_count=1, precision=None, *, tile,
    **kwargs,
):  # fmt: skip
    """``lax.conv_general_dilated`` as ``nnx.Conv`` calls it, as Winograd where
    the convolution is 3x3, stride 1, SAME, undilated, ungrouped, NHWC/HWIO on
    maps whose sides ``tile`` divides."""
    plain = (
        rhs.shape[:2] == (3, 3)
        and tuple(window_strides) == (1, 1)
        and padding in ("SAME", ((1, 1), (1, 1)))
        and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and tuple(rhs_dilation or (1, 1)) == (1, 1)
        and feature_group_count == 1
        and lhs.ndim == 4
        and lhs.shape[1] % tile == 0
        and lhs.shape[2] % tile == 0
        and dimension_numbers == _NHWC
        and not kwargs.get("preferred_element_type")
    )
    if plain:
        return winograd_conv3x3(lhs, rhs, tile)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision, **kwargs,
    )  # fmt: skip


# What nnx.Conv passes for [N, H, W, C] inputs and [3, 3, C, D] kernels.
_NHWC = jax.lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))

# One function object per tile: folded models of one architecture then have equal
# graph definitions, so a jitted caller traces once for all their weights.
_CONV_FOR_TILE = {
    tile: functools.partial(_conv_winograd_when_possible, tile=tile) for tile in (2, 4)
}
