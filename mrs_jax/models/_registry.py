"""Model registry: ``get_model(name, num_classes=..., seed=...)``.

Variants are ``functools.partial`` of four families (flax ``examples/imagenet``):

| name | family | notes |
|---|---|---|
| ``small_cnn`` | SmallCNN | 32/64/128 channels; the digits default |
| ``fast_cnn`` | FastCNN | airbench-style; the first CIFAR-10 CPU model |
| ``airbench`` | AirbenchNet | airbench94's shape: whitening, 64/256/256 |
| ``resnet20`` / ``resnet56`` / ``resnet110`` | CifarResNet | Cohen et al. |
| ``wrn28_10`` | WideResNet | WRN-28-10 |
| ``resnet50`` | ImageNetResNet | bottleneck, (3, 4, 6, 3) |
| ``tiny_cnn`` / ``fast_cnn_tiny`` / ``airbench_tiny`` / | | tests only |
| ``resnet_tiny`` | | tests only |
| ``wrn_tiny`` / ``resnet50_tiny`` | | tests only |
"""

import functools
import inspect
from collections.abc import Callable

import jax
from flax import nnx

from mrs_jax.models._airbench import AirbenchNet
from mrs_jax.models._fast_cnn import FastCNN
from mrs_jax.models._resnet_cifar import CifarResNet
from mrs_jax.models._resnet_imagenet import ImageNetResNet
from mrs_jax.models._small_cnn import SmallCNN
from mrs_jax.models._wide_resnet import WideResNet

_MODELS: dict[str, Callable[..., nnx.Module]] = {
    "small_cnn": SmallCNN,
    "fast_cnn": FastCNN,
    "fast_cnn_tiny": functools.partial(FastCNN, widths=(4, 8, 8, 8)),
    "airbench": AirbenchNet,
    "airbench_tiny": functools.partial(AirbenchNet, widths=(8, 8, 8)),
    "tiny_cnn": functools.partial(SmallCNN, widths=(8, 16)),
    "resnet20": functools.partial(CifarResNet, depth=20),
    "resnet56": functools.partial(CifarResNet, depth=56),
    "resnet110": functools.partial(CifarResNet, depth=110),
    "resnet_tiny": functools.partial(CifarResNet, depth=8),
    "wrn28_10": functools.partial(WideResNet, depth=28, widen=10),
    "wrn_tiny": functools.partial(WideResNet, depth=10, widen=1),
    "resnet50": functools.partial(ImageNetResNet, stage_sizes=(3, 4, 6, 3)),
    # Two bottleneck stages only: compiles fast enough for smoke tests.
    "resnet50_tiny": functools.partial(ImageNetResNet, stage_sizes=(1, 1), width=4),
}


def check_model_kwargs(name: str, kwargs: dict) -> None:
    """Refuses a keyword the model family ``name`` does not take, naming those
    it does (``model_kwargs`` from a config, the command line or ``model.json``).
    """
    if name not in _MODELS:
        raise ValueError(f"name must be one of {model_names()}; got {name!r}")
    family = _MODELS[name]
    family = family.func if isinstance(family, functools.partial) else family
    parameters = inspect.signature(family.__init__).parameters
    accepted = sorted(
        p for p, spec in parameters.items()
        if spec.kind is inspect.Parameter.KEYWORD_ONLY and p != "rngs"
    )  # fmt: skip
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model_kwargs: model {name!r} takes no {', '.join(unknown)}; it takes "
            f"{', '.join(accepted)}"
        )


def model_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_model`, sorted."""
    return tuple(sorted(_MODELS))


def get_model(
    name: str,
    *,
    num_classes: int,
    seed: int | None = None,
    rngs: nnx.Rngs | None = None,
    **kwargs,
) -> nnx.Module:
    """Builds a freshly initialised model by name.

    Args:
        name: one of :func:`model_names`.
        num_classes: number of output logits K (>= 2).
        seed: integer seed for the initialisation (jitted, with the ``rbg`` PRNG);
            give this or ``rngs``.
        rngs: an ``nnx.Rngs``; give this or ``seed``.
        **kwargs: forwarded to the model family (e.g. ``in_channels``, ``mean``,
            ``std``, ``width``).

    Returns:
        An ``nnx.Module`` mapping ``[B, H, W, C]`` images in [0, 1] to ``[B, K]``
        logits, in training mode (see :func:`mrs_jax.models.as_classifier`).

    Raises:
        ValueError: unknown name, bad ``num_classes``, or not exactly one of
            ``seed`` / ``rngs``.
    """
    if name not in _MODELS:
        raise ValueError(f"name must be one of {model_names()}; got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int; got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}")
    if (seed is None) == (rngs is None):
        raise ValueError("give exactly one of seed and rngs")
    check_model_kwargs(name, kwargs)
    family = _MODELS[name]
    if rngs is not None:
        return family(num_classes, rngs=rngs, **kwargs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {seed!r}")

    graphdefs = []

    def init() -> nnx.State:
        # The "rbg" generator: XLA compiles its initialisers several times faster on
        # CPU than threefry's.
        key = jax.random.key(seed, impl="rbg")
        graphdef, state = nnx.split(family(num_classes, rngs=_Keys(key), **kwargs))
        graphdefs.append(graphdef)  # structure only: no tracer escapes
        return state

    # Initialise inside one jit, traced once: one compile instead of one per
    # initialiser call.
    state = jax.jit(init)()
    return nnx.merge(graphdefs[0], state)


class _Keys:
    """Stands for ``nnx.Rngs(params=key)`` while a model is built: ``params()``
    gives ``fold_in(key, 0)``, ``fold_in(key, 1)``, ..., the keys ``nnx.Rngs``
    gives, counted in Python. ``nnx.Rngs`` keeps its count in a traced variable
    whose every update costs time that grows with the traced program, so a deep
    model's initialisation traced in time quadratic in its depth."""

    def __init__(self, key: jax.Array):
        self.params = _KeyStream(key)


class _KeyStream:
    def __init__(self, key: jax.Array):
        self.key, self.count = key, 0

    def __call__(self) -> jax.Array:
        key = jax.random.fold_in(self.key, self.count)
        self.count += 1
        return key
