"""Inference-time BatchNorm folding: each eval-mode BatchNorm goes into its conv.

An eval-mode BatchNorm after a convolution is a per-channel affine map, so the
pair equals one convolution with a scaled kernel and a bias; the folded model
computes the same logits up to float rounding, with less work per layer. A
BatchNorm after a max pool becomes a precomputed :class:`ChannelAffine`.
Supported: ``CifarResNet``, ``ImageNetResNet``, ``FastCNN``, ``AirbenchNet`` and
``SmallCNN``;
``WideResNet`` (pre-activation) is refused. Derivation: ``docs/models.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.tree_util import Partial

from mrs_jax.models._airbench import AirbenchGroup, AirbenchNet
from mrs_jax.models._classifier import classifier_from_split
from mrs_jax.models._fast_cnn import ConvGroup, FastCNN
from mrs_jax.models._resnet_cifar import BasicBlock, CifarResNet
from mrs_jax.models._resnet_imagenet import Bottleneck, ImageNetResNet
from mrs_jax.models._small_cnn import SmallCNN

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
    AirbenchGroup: (("conv2", "norm2"),),
}
# BatchNorms after a max pool, per module type: each becomes a ChannelAffine.
_AFTER_POOL = {ConvGroup: "bn1", AirbenchGroup: "norm1"}
_FAMILIES = (CifarResNet, ImageNetResNet, FastCNN, AirbenchNet, SmallCNN)


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


def fold_batchnorm(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` with every eval-mode BatchNorm folded away.

    Args:
      model: a ``CifarResNet``, ``ImageNetResNet``, ``FastCNN``, ``AirbenchNet``
        or ``SmallCNN``;
        its BatchNorms' running statistics are used whatever mode it is in.

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
    folded = nnx.clone(model)
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
        after_pool = _AFTER_POOL.get(type(module))
        if after_pool is not None:
            norm = getattr(module, after_pool)
            scale, shift = _scale_shift(norm, _name(path, after_pool))
            setattr(
                module,
                after_pool,
                ChannelAffine(jnp.asarray(scale), jnp.asarray(shift)),
            )
    return folded


def folded_classifier(model: nnx.Module) -> Partial:
    """``classify(images [B, H, W, C] in [0, 1]) -> logits [B, K]`` of the
    folded model: a drop-in for :func:`mrs_jax.models.as_classifier` (a
    ``Partial`` whose leaves are the folded weights), for ``sample_counts``,
    ``certify`` and ``predict``.

    Raises:
      TypeError, ValueError: as :func:`fold_batchnorm`.
    """
    graphdef, state = nnx.split(fold_batchnorm(model))
    return classifier_from_split(graphdef, state)


def _name(path, attribute: str) -> str:
    return ".".join([*(str(p) for p in path), attribute])


def _scale_shift(norm: nnx.BatchNorm, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(s, beta - s * mean)`` of an eval-mode BatchNorm, float32.

    Host arithmetic in NumPy, one float32 operation at a time as XLA's would
    round it, so that folding compiles no program per layer shape (it ran a
    dozen tiny XLA compiles per layer); only the reciprocal square root is
    XLA's."""
    if not isinstance(norm, nnx.BatchNorm):
        raise TypeError(f"{name} must be an nnx.BatchNorm; got {type(norm).__name__}")
    mean = np.asarray(norm.mean[...], np.float32)
    var = np.asarray(norm.var[...], np.float32) + np.float32(norm.epsilon)
    gamma = np.float32(1.0) if norm.scale is None else _f32(norm.scale[...])
    beta = np.float32(0.0) if norm.bias is None else _f32(norm.bias[...])
    if not all(np.isfinite(p).all() for p in (mean, var, gamma, beta)):
        raise ValueError(f"{name} has non-finite statistics or parameters")
    if not (var > 0).all():
        raise ValueError(f"{name} has var + epsilon <= 0")
    scale = gamma * np.asarray(jax.lax.rsqrt(var))
    return scale, beta - scale * mean


def _f32(value) -> np.ndarray:
    return np.asarray(jnp.asarray(value).astype(jnp.float32))


def _fold_into(conv: nnx.Conv, norm: nnx.BatchNorm, name: str) -> None:
    """Scales ``conv``'s kernel and sets its bias so that it computes
    ``norm(conv(x))``."""
    if not isinstance(conv, nnx.Conv):
        raise TypeError(f"the conv before {name} must be an nnx.Conv")
    scale, shift = _scale_shift(norm, name)
    if conv.bias is not None:
        shift = shift + scale * _f32(conv.bias[...])
    kernel = conv.kernel[...]
    conv.kernel = nnx.Param(jnp.asarray(_f32(kernel) * scale, kernel.dtype))
    conv.bias = nnx.Param(jnp.asarray(shift, kernel.dtype))
    conv.use_bias = True
