"""Counting ``argmax classify(x + e)`` over masked noise draws, on the device.

:func:`sample_counts` is the device function for one image; the host drivers
count a batch of images through :class:`Counter`, which runs the same per-draw
computation (:func:`noisy_draw`) in one jitted program sharded over the
devices. Draw ``i`` of an image with key ``k`` uses ``fold_in(k, i)``, so the
counts do not depend on the chunk size, the devices or the batch. A draw with
non-finite logits is counted in no class. Design: ``docs/masked_smoothing.md``
("Counting on the device").
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.tree_util import Partial

from mrs_jax.core import MAX_DRAWS, checks as _checks, sharding

Classifier = Callable[[jax.Array], jax.Array]

# The counters and draw indices on the device are int32: one program call
# counts at most this many (image, draw) pairs, and draw indices stay below
# 2**31. Host drivers split longer runs into calls of at most this many pairs.
MAX_PAIRS_PER_CALL = 2**30


# On a CPU backend, a program step takes at most this many samples per device,
# whatever chunk the caller asks for (None: the chunk asked for is the chunk run).
# Off by default: a cap helped large models by no more than the noise and slowed
# small ones two- to threefold (docs/masked_smoothing.md). Counts never change.
CPU_CHUNK_PER_DEVICE: int | None = None


def as_pytree(classify: Classifier) -> Partial:
    """``classify`` as a ``Partial``: plain functions and weight-carrying
    Partials then go through the same jitted program (a Partial with no bound
    arguments is a pytree with no leaves)."""
    return classify if isinstance(classify, Partial) else Partial(classify)


def describe(classify: Classifier) -> str:
    """A short name for a classifier in error messages."""
    func = classify.func if isinstance(classify, Partial) else classify
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__name__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def noise_window(mask: np.ndarray, multiple: int = 8):
    """Host step: the top-left and static ``(height, width)`` of a window
    holding a concrete ``[H, W]`` mask.

    Sides are rounded up to a multiple of ``multiple`` (clipped to the image) so
    that masks of similar size share one compiled program. The top-left equals
    :func:`window_corner` of the mask for that window.
    """
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:  # an empty mask: no noise at all
        return (0, 0), (1, 1)
    sides = []
    starts = []
    for hits, extent in ((rows, height), (cols, width)):
        side = min(extent, -(-(hits[-1] - hits[0] + 1) // multiple) * multiple)
        sides.append(int(side))
        starts.append(int(min(hits[0], extent - side)))
    return tuple(starts), tuple(sides)


def window_corner(mask: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Device step: the ``[2]`` int32 top-left of the static ``window`` placed
    at the mask's first row and column, moved inside the image where it would
    cross the border (the window must hold the mask: :func:`noise_window`)."""
    height, width = mask.shape
    first_row = jnp.argmax(jnp.any(mask, axis=1))
    first_col = jnp.argmax(jnp.any(mask, axis=0))
    top = jnp.minimum(first_row, height - window[0])
    left = jnp.minimum(first_col, width - window[1])
    return jnp.stack([top, left]).astype(jnp.int32)


def noisy_draw(x, window_mask, corner, sigma, key, draw, window) -> jax.Array:
    """Device step: draw ``draw`` of ``x + e``, ``e ~ N(0, sigma^2 M)``.

    Args:
      x: ``[H, W, C]`` float32 image.
      window_mask: ``[h, w]`` float32 mask inside the window.
      corner: ``[2]`` int32 top-left of the window.
      sigma: noise standard deviation.
      key: the image's typed key; the draw's noise is ``fold_in(key, draw)``.
      draw: int32 draw index.
      window: static ``(h, w)``.
    """
    corner3 = (corner[0], corner[1], 0)
    size = (*window, x.shape[-1])
    clean_window = jax.lax.dynamic_slice(x, corner3, size)
    scale = sigma * window_mask[:, :, None]
    noise = jax.random.normal(jax.random.fold_in(key, draw), size)
    return jax.lax.dynamic_update_slice(x, clean_window + scale * noise, corner3)


def _count_pairs(
    classify, xs, window_masks, corners, sigma, keys, starts, nums, *,
    chunk, num_classes, window, mesh,
):
    """``[B, num_classes]`` int32: per image, the class counts of its draws
    ``starts[b] .. starts[b] + nums[b] - 1`` (finite logits only).

    The pairs are laid end to end, ``chunk`` per step; with a ``mesh`` each
    chunk's pair axis is sharded over its ``"samples"`` axis.
    """
    num_images = xs.shape[0]
    ends = jnp.cumsum(nums)
    firsts = ends - nums
    total = ends[-1]

    def constrain(value, ndim):
        if mesh is None:
            return value
        return jax.lax.with_sharding_constraint(
            value, sharding.along_samples(mesh, ndim)
        )

    def noisy(pair):
        image = jnp.minimum(jnp.searchsorted(ends, pair, side="right"), num_images - 1)
        draw = starts[image] + pair - firsts[image]
        return (
            noisy_draw(
                xs[image], window_masks[image], corners[image], sigma,
                keys[image], draw, window,
            ),
            image,
        )

    def add_chunk(step, counts):
        pair = constrain(step * chunk + jnp.arange(chunk, dtype=jnp.int32), 1)
        batch, image = jax.vmap(noisy)(pair)
        logits = classify(constrain(batch, 4))
        if logits.shape != (chunk, num_classes):
            raise ValueError(
                f"classify must return logits [B, num_classes] = "
                f"{(chunk, num_classes)}, got {logits.shape}"
            )
        hits = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes, dtype=jnp.int32)
        finite = jnp.all(jnp.isfinite(logits), axis=-1) & (pair < total)
        hits = hits * finite[:, None].astype(jnp.int32)
        return counts + jax.ops.segment_sum(hits, image, num_segments=num_images)

    # Written so that no int32 intermediate exceeds ``total + chunk``.
    steps = total // chunk + (total % chunk > 0).astype(total.dtype)
    zeros = jnp.zeros((num_images, num_classes), jnp.int32)
    return jax.lax.fori_loop(0, steps, add_chunk, zeros)


def sample_counts(
    classify: Classifier,
    x,
    mask,
    sigma,
    *,
    key: jax.Array,
    num: int,
    num_classes: int,
    batch_size: int,
    window: tuple[int, int] | None = None,
    mesh: Mesh | None = None,
) -> jax.Array:
    """Device function: counts ``argmax classify(x + e)`` over ``num`` draws of
    ``e ~ N(0, sigma^2 M)`` (noise only where the mask is 1, every channel;
    ``docs/masked_smoothing.md``).

    Pure and traceable: ``jax.jit``, ``jax.vmap`` (over ``x``, ``mask``,
    ``sigma``, ``key``) and use inside a user's own jitted code all work. Shapes,
    dtypes and the static settings are checked at trace time; values are not
    (pixels in [0, 1], a non-empty mask, ``sigma > 0``: the host drivers
    ``certify``/``predict``/``certify_at`` check them). A draw whose logits are
    not all finite is counted in no class, so ``counts.sum() < num`` says the
    classifier broke (the host drivers refuse it).

    Args:
      classify: ``[B, H, W, C] -> [B, num_classes]`` logits; a plain function or
        a ``jax.tree_util.Partial`` whose leaves (e.g. model weights) become
        arguments of the compiled program rather than constants.
      x: ``[H, W, C]`` float image in [0, 1].
      mask: ``[H, W]`` bool or {0, 1} (data: it may be traced).
      sigma: noise standard deviation (a float or a traced scalar).
      key: one typed PRNG key (``jax.random.key``); draw ``i`` uses
        ``fold_in(key, i)``.
      num: draws, static, in ``[1, 2**30]``.
      num_classes: K, static, >= 2.
      batch_size: draws per step, static (memory is one step's batch).
      window: static ``(h, w)`` of the noise window holding the mask; None:
        the whole image. The host drivers use ``noise_window(mask)[1]``; pass
        it to get exactly their counts.
      mesh: shard each step's draws over this mesh's ``"samples"`` axis (the
        step is then rounded up to a multiple of its devices); None: no
        sharding constraint.

    Returns:
      ``[num_classes]`` int32 counts (summing to ``num`` for a sound classifier).

    Raises:
      ValueError, TypeError: at trace time, a wrong shape, dtype or static
        setting, naming the argument.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from mrs_jax.certification import sample_counts, square_mask
      >>> def classify(images):  # [B, 4, 4, 1] -> [B, 2]
      ...     score = jnp.sum(images, axis=(1, 2, 3)) - 4.0
      ...     return jnp.stack([-score, score], axis=-1)
      >>> x = np.full((4, 4, 1), 0.75, np.float32)
      >>> mask = square_mask(x.shape, 1, 1, 2)
      >>> count = lambda sigma: sample_counts(
      ...     classify, x, mask, sigma, key=jax.random.key(0), num=64,
      ...     num_classes=2, batch_size=32)
      >>> count(0.25).tolist(), jax.jit(count)(0.25).tolist()
      ([0, 64], [0, 64])
    """
    num, num_classes, batch_size, window = _static_settings(
        x, mask, num, num_classes, batch_size, window
    )
    key = _checks.prng_key(key)
    if mesh is not None:
        _checks.mesh_with_axis(mesh, sharding.SAMPLES)
    chunk = min(batch_size, num)
    classify = as_pytree(classify)
    if mesh is not None:
        chunk = sharding.round_up_to_devices(chunk, mesh)
        leaves = jax.tree.leaves(classify)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            # Weights restored from a checkpoint are committed to one device.
            classify = jax.device_put(classify, sharding.replicated(mesh))
    # ``num`` is an argument of the program, not a constant: other counts of
    # draws with the same step size reuse the compiled program.
    return _sample_counts_program(chunk, num_classes, window, mesh)(
        classify, x, mask, sigma, key, jnp.int32(num)
    )


def _static_settings(x, mask, num, num_classes, batch_size, window):
    if getattr(x, "ndim", None) != 3:
        raise ValueError(
            f"x must be one image [H, W, C], got shape {getattr(x, 'shape', None)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a float array in [0, 1], got dtype {x.dtype}")
    if getattr(mask, "shape", None) != tuple(x.shape[:2]):
        raise ValueError(
            f"mask must have shape [H, W] = {tuple(x.shape[:2])} to match the "
            f"image, got {getattr(mask, 'shape', None)}"
        )
    num = _checks.positive_int(num, "num")
    if num > MAX_PAIRS_PER_CALL:
        raise ValueError(
            f"num must be <= 2**30 in one device call (int32 counters), got {num}; "
            "split the draws into ranges or use the host drivers"
        )
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    if window is None:
        window = tuple(int(v) for v in x.shape[:2])
    window = tuple(window)
    if len(window) != 2 or not all(
        1 <= int(w) <= e for w, e in zip(window, x.shape[:2], strict=True)
    ):
        raise ValueError(
            f"window must be (h, w) within {tuple(x.shape[:2])}, got {window}"
        )
    return num, num_classes, batch_size, (int(window[0]), int(window[1]))


@functools.cache
def _sample_counts_program(chunk, num_classes, window, mesh):
    def count(classify, x, mask, sigma, key, num):
        mask = jnp.asarray(mask).astype(bool)
        corner = window_corner(mask, window)
        window_mask = jax.lax.dynamic_slice(
            mask.astype(jnp.float32), (corner[0], corner[1]), window
        )
        counts = _count_pairs(
            classify,
            jnp.asarray(x, jnp.float32)[None],
            window_mask[None],
            corner[None],
            jnp.asarray(sigma, jnp.float32),
            key[None],
            jnp.zeros((1,), jnp.int32),
            jnp.reshape(num, (1,)),
            chunk=chunk,
            num_classes=num_classes,
            window=window,
            mesh=mesh,
        )
        return counts[0]

    return jax.jit(count)


@functools.cache
def pairs_program(mesh: Mesh, chunk: int, num_classes: int, key_impl, window, count):
    """The host drivers' jitted program for ``count`` images, one chunk size,
    class count, key type and window shape (:func:`_count_pairs`)."""

    def run(classify, xs, window_masks, corners, sigma, key_data, starts, nums):
        keys = jax.random.wrap_key_data(key_data, impl=key_impl)
        return _count_pairs(
            classify, xs, window_masks, corners, sigma, keys, starts, nums,
            chunk=chunk, num_classes=num_classes, window=window, mesh=mesh,
        )

    return jax.jit(run, out_shardings=sharding.replicated(mesh))


def device_chunk(chunk: int, mesh: Mesh) -> int:
    """The chunk a counting program runs for a requested ``chunk``: a multiple of
    the device count, capped at ``CPU_CHUNK_PER_DEVICE`` samples per device on a
    CPU mesh when that is set (it is not by default)."""
    devices = mesh.devices.size
    if CPU_CHUNK_PER_DEVICE and mesh.devices.flat[0].platform == "cpu":
        chunk = min(chunk, CPU_CHUNK_PER_DEVICE * devices)
    return sharding.round_up_to_devices(chunk, mesh)


class Counter:
    """Host driver: counts ranges of draws for every image of a batch, one
    program per noise-window shape.

    For image ``b``, its draws ``starts[b] .. starts[b] + nums[b] - 1``; the
    ``sum(nums)`` (image, draw) pairs are laid end to end and cut into chunks
    whose pair axis is sharded over every device. One image is the batch of one.

    Arguments are taken as validated (the public host drivers check them). The
    images, masks and weights go to the devices once, however many ranges are
    counted; the programs of all window shapes are dispatched before any result
    is read.

    Args:
      classify: ``[N, H, W, C] -> [N, num_classes]`` logits.
      xs: ``[B, H, W, C]`` float32 images in [0, 1].
      masks: ``[B, H, W]`` bool masks, none empty.
      sigma: noise standard deviation.
      num_classes: K.
      mesh: devices sharding each chunk's pairs.
    """

    def __init__(self, classify: Classifier, xs, masks, sigma, *, num_classes, mesh):
        self.num_images, self.num_classes, self.mesh = len(xs), num_classes, mesh
        self.classify = as_pytree(classify)
        put = functools.partial(sharding.replicate, mesh=mesh)
        corners, windows = zip(*(noise_window(m) for m in masks), strict=True)
        fixed = (
            # Weights restored from a checkpoint are committed to one device; the
            # program runs on the whole mesh, so place them there.
            jax.device_put(self.classify, sharding.replicated(mesh)),
            put(np.asarray(xs, np.float32)),
        )
        self.groups = []  # (window shape, member flags, placed arrays)
        for window in sorted(set(windows)):
            members = np.array([w == window for w in windows])
            window_masks = np.zeros((self.num_images, *window), np.float32)
            for b in np.flatnonzero(members):
                (top, left) = corners[b]
                rows, cols = slice(top, top + window[0]), slice(left, left + window[1])
                window_masks[b] = masks[b][rows, cols]
            placed = (*fixed, put(window_masks), put(np.array(corners, np.int32)))
            self.groups.append((window, members, placed))
        self.sigma = put(np.float32(sigma))

    def count(self, keys: jax.Array, starts, nums, chunk: int) -> np.ndarray:
        """``[B, K]`` int64 counts of draws ``starts[b] .. starts[b] + nums[b] - 1``
        of each image with key ``keys[b]``, about ``chunk`` pairs per device step
        (:func:`device_chunk`).

        Raises:
          ValueError: ``classify`` returned NaN or inf logits for some draw (a
            broken classifier, e.g. non-finite weights: its argmax would be a
            meaningless class), or a draw index would reach ``2**31``.
        """
        starts = np.asarray(starts, np.int64)
        nums = np.asarray(nums, np.int64)
        if np.any(starts + nums > MAX_DRAWS):
            raise ValueError(
                f"draw indices must stay below 2**31, got a range ending at "
                f"{int((starts + nums).max())}"
            )
        chunk = device_chunk(chunk, self.mesh)
        counts = np.zeros((self.num_images, self.num_classes), np.int64)
        for part_starts, part_nums in _parts(starts, nums):
            counts += self._count_part(keys, part_starts, part_nums, chunk)
        broken = np.flatnonzero(counts.sum(1) != nums)
        if broken.size:
            b = int(broken[0])
            bad = int(nums[b] - counts[b].sum())
            where = "" if self.num_images == 1 else f" of image {b}"
            raise ValueError(
                f"classify ({describe(self.classify)}) returned NaN or inf logits "
                f"for {bad} of {int(nums[b])} noisy samples{where}: the classifier "
                "is broken (e.g. non-finite weights), so its counts would be "
                "meaningless"
            )
        return counts

    def _count_part(self, keys, starts, nums, chunk) -> np.ndarray:
        put = functools.partial(sharding.replicate, mesh=self.mesh)
        key_data = put(np.asarray(jax.random.key_data(keys)))
        key_impl = jax.random.key_impl(keys)
        placed_starts = put(starts.astype(np.int32))
        pending = []
        for window, members, placed in self.groups:
            group_nums = np.where(members, nums, 0).astype(np.int32)
            if not group_nums.any():
                continue
            program = pairs_program(
                self.mesh, chunk, self.num_classes, key_impl, window, self.num_images
            )
            # Dispatch is asynchronous: every group's program is queued first.
            pending.append(
                program(*placed, self.sigma, key_data, placed_starts, put(group_nums))
            )
        counts = np.zeros((self.num_images, self.num_classes), np.int64)
        for result in pending:
            counts += np.asarray(result).astype(np.int64)
        return counts


def _parts(starts: np.ndarray, nums: np.ndarray):
    """``(starts, nums)`` cut into calls of at most ``MAX_PAIRS_PER_CALL`` pairs
    in all (the device counters are int32), images in order."""
    starts, left = starts.copy(), nums.copy()
    while left.sum() > 0:
        take = np.zeros_like(left)
        budget = MAX_PAIRS_PER_CALL
        for b in np.flatnonzero(left):
            take[b] = min(left[b], budget)
            budget -= take[b]
            if budget == 0:
                break
        yield starts.copy(), take
        starts += take
        left -= take


def chunk_for(total: int, batch_size: int, mesh: Mesh) -> int:
    """The chunk for a call counting ``total`` pairs in all: ``batch_size``,
    or ``total`` when that is smaller (rounded up to the devices)."""
    return sharding.round_up_to_devices(max(1, min(batch_size, total)), mesh)
