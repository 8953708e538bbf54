"""Ablation to one band or block, encoded: what a (de)randomized smoothing base
classifier sees, in training and in certification.

An image ``[H, W, C]`` in [0, 1] becomes ``[H, W, 2C]``: channels ``(x, 1 - x)``
where kept and ``(0, 0)`` where ablated (Levine & Feizi's encoding: a kept
pixel's channel pairs sum to 1, an ablated one's to 0, so no colour looks
ablated). ``MRS_SPEC.md`` section 10; ``docs/derandomized_smoothing.md``.
Device functions: jit and vmap them (``band`` and ``mode`` static).
"""

import jax
import jax.numpy as jnp

ABLATIONS = ("column", "block")


def encode(x: jax.Array, keep: jax.Array) -> jax.Array:
    """``[H, W, C]`` in [0, 1] and a ``[H, W]`` keep mask -> ``[H, W, 2C]``.

    Kept pixels are ``(x, 1 - x)``, ablated ones ``(0, 0)``.
    """
    keep = keep[..., None].astype(x.dtype)
    return jnp.concatenate([x * keep, (1 - x) * keep], axis=-1)


def band_mask(shape: tuple[int, int], position: jax.Array, band: int, mode: str):
    """The ``[H, W]`` keep mask of one band (column) or block, wrapping around.

    ``position``: the first kept column (``column``), or the flat index
    ``row * W + col`` of the block's top-left (``block``).
    """
    height, width = shape
    cols = (jnp.arange(width) - position % width) % width < band
    if mode == "column":
        return jnp.broadcast_to(cols[None, :], (height, width))
    rows = (jnp.arange(height) - position // width) % height < band
    return rows[:, None] & cols[None, :]


def num_positions(shape: tuple[int, int], mode: str) -> int:
    """How many band positions there are: ``W`` columns, or ``H * W`` blocks."""
    return shape[1] if mode == "column" else shape[0] * shape[1]


def ablate(x: jax.Array, position: jax.Array, band: int, mode: str) -> jax.Array:
    """The encoded ablation of ``x: [H, W, C]`` to the band at ``position``."""
    return encode(x, band_mask(x.shape[:2], position, band, mode))


def ablation_augment(
    key: jax.Array, images: jax.Array, band: int, mode: str
) -> jax.Array:
    """``[B, H, W, C] -> [B, H, W, 2C]``: each image ablated to one band (or
    block) at a uniform random position, encoded; the training augmentation of
    a derandomized smoothing base classifier."""
    count = num_positions(images.shape[1:3], mode)
    positions = jax.random.randint(key, (images.shape[0],), 0, count)
    return jax.vmap(lambda x, p: ablate(x, p, band, mode))(images, positions)


def encode_whole(images: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, H, W, 2C]``: every pixel kept, encoded (the clean
    view of an image for a classifier of encoded ablations)."""
    keep = jnp.ones(images.shape[1:3], bool)
    return jax.vmap(lambda x: encode(x, keep))(images)
