"""Training augmentation: Gaussian noise inside random squares, flips and crops.

MRS_SPEC section 7: per image a width ``w`` uniform on the integers ``[w_min, w_max]``,
a location uniform over all positions that keep the square fully inside the image,
and ``N(0, sigma^2)`` noise on every channel of the pixels inside. The noisy image is
not clipped to [0, 1]: smoothing certifies ``x + e`` unclipped, so training matches.
"""

import jax
import jax.numpy as jnp


def _validate_widths(image_hw: tuple[int, int], w_min: int, w_max: int) -> None:
    if len(image_hw) != 2 or any(int(s) < 1 for s in image_hw):
        raise ValueError(f"image_hw must be two positive ints; got {image_hw}")
    for name, w in (("w_min", w_min), ("w_max", w_max)):
        if isinstance(w, bool) or not isinstance(w, int):
            raise TypeError(f"{name} must be an int; got {w!r}")
    if not 1 <= w_min <= w_max <= min(image_hw):
        raise ValueError(
            f"need 1 <= w_min <= w_max <= min(image_hw)={min(image_hw)}; got "
            f"w_min={w_min}, w_max={w_max}"
        )


def random_square_mask(
    key: jax.Array, image_hw: tuple[int, int], w_min: int, w_max: int
) -> jax.Array:
    """One random square mask.

    Args:
        key: typed PRNG key.
        image_hw: (H, W).
        w_min, w_max: inclusive range of the square's side.

    Returns:
        ``[H, W]`` bool, True on a ``w x w`` square fully inside the image.
    """
    height, width = image_hw
    width_key, row_key, col_key = jax.random.split(key, 3)
    side = jax.random.randint(width_key, (), w_min, w_max + 1)
    # Uniform top-left corner among the H - side + 1 valid rows (and columns).
    top = jax.random.randint(row_key, (), 0, height - side + 1)
    left = jax.random.randint(col_key, (), 0, width - side + 1)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def random_square_masks(
    key: jax.Array, batch: int, image_hw: tuple[int, int], w_min: int, w_max: int
) -> jax.Array:
    """``batch`` independent random square masks.

    Args:
        key: typed PRNG key.
        batch: number of masks B.
        image_hw: (H, W).
        w_min, w_max: inclusive range of integer square sides,
            ``1 <= w_min <= w_max <= min(H, W)``.

    Returns:
        ``[B, H, W]`` bool.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int; got {batch!r}")
    image_hw = tuple(int(s) for s in image_hw)
    _validate_widths(image_hw, w_min, w_max)
    keys = jax.random.split(key, batch)
    return jax.vmap(lambda k: random_square_mask(k, image_hw, w_min, w_max))(keys)


def masked_noise_augment(
    key: jax.Array,
    images: jax.Array,
    sigma: float,
    w_min: int,
    w_max: int,
    full_image: bool = False,
) -> jax.Array:
    """Adds ``N(0, sigma^2)`` noise inside one random square per image.

    Args:
        key: typed PRNG key.
        images: ``[B, H, W, C]`` float in [0, 1].
        sigma: noise standard deviation in [0, 1] pixel units, >= 0.
        w_min, w_max: inclusive range of square sides (ignored if ``full_image``).
        full_image: if True, add noise to every pixel instead (Cohen et al.).

    Returns:
        ``[B, H, W, C]`` noisy images, not clipped.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C]; got shape {images.shape}")
    if not isinstance(sigma, jax.Array) and float(sigma) < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    batch, height, width, _ = images.shape
    mask_key, noise_key = jax.random.split(key)
    noise = sigma * jax.random.normal(noise_key, images.shape, images.dtype)
    if full_image:
        return images + noise
    masks = random_square_masks(mask_key, batch, (height, width), w_min, w_max)
    return images + noise * masks[..., None].astype(images.dtype)


def random_flip_crop(key: jax.Array, image: jax.Array, pad: int = 4) -> jax.Array:
    """Random horizontal flip, then a random crop of the zero-padded image.

    Args:
        key: typed PRNG key.
        image: ``[H, W, C]``.
        pad: zero padding on each side before cropping back to ``[H, W]``.

    Returns:
        ``[H, W, C]``: shifted by up to ``pad`` pixels each way, maybe mirrored.
    """
    flip_key, row_key, col_key = jax.random.split(key, 3)
    image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
    height, width, channels = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    top = jax.random.randint(row_key, (), 0, 2 * pad + 1)
    left = jax.random.randint(col_key, (), 0, 2 * pad + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
