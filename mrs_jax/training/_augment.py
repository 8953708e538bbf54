"""Training augmentation: noise or occlusion inside random squares, flips and crops.

MRS_SPEC section 7: per image a width ``w`` uniform on the integers ``[w_min, w_max]``,
a location uniform over all positions that keep the square fully inside the image,
and ``N(0, sigma^2)`` noise on every channel of the pixels inside. The noisy image is
not clipped to [0, 1]: smoothing certifies ``x + e`` unclipped, so training matches.

The augmentations are device functions: ``jax.jit`` them (with the sizes, widths
and counts static) and ``jax.vmap`` them over keys and image batches. Shapes,
dtypes and static settings are checked at trace time; the ranges of ``sigma``
and ``fill`` only when they are concrete; pixel values are not read (they are
the training loop's batches, scaled to [0, 1] by ``mrs_jax.data``).
"""

import jax
import jax.numpy as jnp
import numpy as np


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


def _check_images(images) -> None:
    """Trace-time checks of an image batch: an array [B, H, W, C] of floats."""
    if not hasattr(images, "ndim") or not hasattr(images, "dtype"):
        raise TypeError(f"images must be an array; got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C]; got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"images must be a float array; got dtype {images.dtype}")


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
        images: ``[B, H, W, C]`` float in [0, 1] (values not checked).
        sigma: noise standard deviation in [0, 1] pixel units, >= 0 (checked
            when it is a Python number; a jax array is taken as it is).
        w_min, w_max: inclusive range of square sides (ignored if ``full_image``).
        full_image: if True, add noise to every pixel instead (Cohen et al.).

    Returns:
        ``[B, H, W, C]`` noisy images, not clipped.
    """
    _check_images(images)
    if not isinstance(sigma, jax.Array) and float(sigma) < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    batch, height, width, _ = images.shape
    mask_key, noise_key = jax.random.split(key)
    noise = sigma * jax.random.normal(noise_key, images.shape, images.dtype)
    if full_image:
        return images + noise
    masks = random_square_masks(mask_key, batch, (height, width), w_min, w_max)
    return images + noise * masks[..., None].astype(images.dtype)


def random_flip_crop(
    key: jax.Array,
    image: jax.Array,
    pad: int = 4,
    *,
    flip: bool = True,
    pad_mode: str = "constant",
) -> jax.Array:
    """Random horizontal flip, then a random crop of the padded image.

    Args:
        key: typed PRNG key.
        image: ``[H, W, C]``.
        pad: padding on each side before cropping back to ``[H, W]``.
        flip: flip with probability 1/2 (False: crop only; the crop draws the
            same offsets either way).
        pad_mode: ``constant`` (zeros) or ``reflect``.

    Returns:
        ``[H, W, C]``: shifted by up to ``pad`` pixels each way, maybe mirrored.
    """
    flip_key, row_key, col_key = jax.random.split(key, 3)
    if flip:
        image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
    height, width, channels = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=pad_mode)
    top = jax.random.randint(row_key, (), 0, 2 * pad + 1)
    left = jax.random.randint(col_key, (), 0, 2 * pad + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))


def occlusion_augment(
    key: jax.Array,
    images: jax.Array,
    size: int,
    num_squares: int = 2,
    fill=0.5,
) -> jax.Array:
    """Fills ``num_squares`` random ``size x size`` squares of each image with ``fill``.

    Training for PatchCleanser (Xiang et al. 2022): the base model must classify
    images with masks applied, so it is trained on images with two random masks.
    Use the mask width of :func:`mrs_jax.patchcleanser_masks` as ``size``
    (``s + ceil((N - s + 1) / k) - 1``: 9 for CIFAR-10, ``s = 5``, ``k = 6``) and
    the same ``fill`` as at inference. Each square's top-left corner is uniform
    over the positions that keep it inside the image, independently per square
    and per image; squares may overlap.

    Args:
        key: typed PRNG key.
        images: ``[B, H, W, C]`` float in [0, 1]; may be traced (jittable with
            ``size`` and ``num_squares`` static).
        size: the squares' side, ``1 <= size <= min(H, W)``.
        num_squares: squares per image, >= 1.
        fill: the masked value: a number or ``[C]`` numbers in [0, 1]
            (default 0.5 grey, PatchCleanser's inference default here).

    Returns:
        ``[B, H, W, C]`` images, equal to ``images`` outside the squares.
    """
    _check_images(images)
    _check_squares(images.shape, size, num_squares)
    channels = images.shape[-1]
    if not isinstance(fill, jax.core.Tracer):
        values = np.asarray(fill, dtype=np.float32)
        if values.shape not in ((), (channels,)):
            raise ValueError(
                f"fill must be a number or [C] = [{channels}] numbers; got shape "
                f"{values.shape}"
            )
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(f"fill must lie in [0, 1]; got {fill!r}")
    hidden = _square_unions(key, images.shape, size, num_squares)[..., None]
    fill = jnp.asarray(fill, images.dtype)
    return jnp.where(hidden, fill, images)


def noise_squares_augment(
    key: jax.Array,
    images: jax.Array,
    sigma: float,
    size: int,
    num_squares: int = 2,
) -> jax.Array:
    """Adds ``N(0, sigma^2)`` noise inside ``num_squares`` random squares per image.

    Training for masked-noise double masking (:mod:`mrs_jax.smoothed_double_masking`):
    its smoothed classifiers see noise in the union of one or two PatchCleanser
    masks, so the base model is trained on noise in the union of two random
    ``size x size`` squares (the mask width, 9 for CIFAR-10 with ``s = 5``,
    ``k = 6``). The squares are placed as :func:`occlusion_augment` places them
    (independent uniform corners, overlaps allowed, so one square now and then);
    the noise is :func:`masked_noise_augment`'s, on every channel, not clipped.

    Args:
        key: typed PRNG key.
        images: ``[B, H, W, C]`` float in [0, 1] (values not read); may be
            traced (jittable with ``size`` and ``num_squares`` static).
        sigma: noise standard deviation in [0, 1] pixel units, >= 0 (checked
            when it is a Python number).
        size: the squares' side, ``1 <= size <= min(H, W)``.
        num_squares: squares per image, >= 1.

    Returns:
        ``[B, H, W, C]`` images, equal to ``images`` outside the squares.
    """
    _check_images(images)
    _check_squares(images.shape, size, num_squares)
    if not isinstance(sigma, jax.Array) and float(sigma) < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    square_key, noise_key = jax.random.split(key)
    hidden = _square_unions(square_key, images.shape, size, num_squares)
    noise = sigma * jax.random.normal(noise_key, images.shape, images.dtype)
    return images + noise * hidden[..., None].astype(images.dtype)


def _check_squares(shape: tuple[int, ...], size, num_squares) -> None:
    """Trace-time checks of ``size`` and ``num_squares`` against ``[B, H, W, C]``."""
    if isinstance(num_squares, bool) or not isinstance(num_squares, int):
        raise TypeError(f"num_squares must be an int; got {num_squares!r}")
    if num_squares < 1:
        raise ValueError(f"num_squares must be >= 1; got {num_squares}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int; got {size!r}")
    _, height, width, _ = shape
    if not 1 <= size <= min(height, width):
        raise ValueError(
            f"size must be in [1, min(H, W)] = [1, {min(height, width)}]; got {size}"
        )


def _square_unions(key, shape: tuple[int, ...], size: int, num_squares: int):
    """``[B, H, W]`` bool: the union of ``num_squares`` random squares per image."""
    batch, height, width, _ = shape
    squares = random_square_masks(
        key, batch * num_squares, (height, width), size, size
    ).reshape(batch, num_squares, height, width)
    return jnp.any(squares, axis=1)
