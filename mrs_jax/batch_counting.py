"""Counting for a batch of images in one device program (issue 11, section 3).

The per-image program (``mrs_jax.counting``) draws ``chunk`` samples of one
image per device step. With a few hundred draws per image that leaves a device
idle and is dominated by dispatch, so here one program counts, for each image
``b`` of a batch, its own range of draws ``starts[b] .. starts[b] + nums[b] - 1``:
the ``sum(nums)`` (image, draw) pairs are laid end to end and cut into chunks
of ``chunk`` pairs, each chunk's pair axis sharded over every device.

Same draws as per image. Pair ``p`` belongs to the image ``b`` whose range holds
it, and takes its noise from ``fold_in(keys[b], draw)`` over the same noise
window (``counting.noise_window`` of ``masks[b]``) as ``counting.range_counter``:
image ``b``'s counts are exactly those of the per-image counter with key
``keys[b]``. The window's shape is static, so images whose masks give
different window shapes (a mask clipped by the image border) are counted by
one program each; the programs are dispatched together before any result is
read. Images with ``nums[b] == 0`` cost nothing, so decided images drop out of
later rounds without a new program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mrs_jax import sharding
from mrs_jax.counting import Classifier, as_pytree, describe, noise_window


@functools.cache
def batch_counts_program(
    mesh: Mesh, chunk: int, num_classes: int, key_impl, window, num_images: int
):
    """The jitted ``count(classify, xs, window_masks, corners, sigma, key_data,
    starts, nums)`` for one chunk size, class count, key type, window shape and
    batch size.

    Returns ``[num_images, num_classes + 1]`` int32: per image, the class counts
    of its draws ``starts[b] .. starts[b] + nums[b] - 1``, then how many of them
    had logits that were not all finite.
    """
    pair_axis = sharding.along_samples(mesh, 1)
    noisy_images = sharding.along_samples(mesh, 4)

    def count(classify, xs, window_masks, corners, sigma, key_data, starts, nums):
        keys = jax.random.wrap_key_data(key_data, impl=key_impl)
        size = (*window, xs.shape[-1])
        ends = jnp.cumsum(nums)
        firsts = ends - nums

        def noisy(pair):
            image = jnp.minimum(
                jnp.searchsorted(ends, pair, side="right"), num_images - 1
            )
            draw = starts[image] + pair - firsts[image]
            x = xs[image]
            corner3 = (corners[image, 0], corners[image, 1], 0)
            clean_window = jax.lax.dynamic_slice(x, corner3, size)
            # Exactly counting.counts_program's arithmetic, for identical draws.
            scale = sigma * window_masks[image][:, :, None]
            noise = jax.random.normal(jax.random.fold_in(keys[image], draw), size)
            noisy_x = jax.lax.dynamic_update_slice(
                x, clean_window + scale * noise, corner3
            )
            return noisy_x, image

        def add_chunk(step, counts):
            pair = step * chunk + jnp.arange(chunk, dtype=jnp.int32)
            pair = jax.lax.with_sharding_constraint(pair, pair_axis)
            batch, image = jax.vmap(noisy)(pair)
            batch = jax.lax.with_sharding_constraint(batch, noisy_images)
            logits = classify(batch)
            if logits.shape != (chunk, num_classes):
                raise ValueError(
                    f"classify must return logits [B, num_classes] = "
                    f"{(chunk, num_classes)}, got {logits.shape}"
                )
            hits = jax.nn.one_hot(jnp.argmax(logits, -1), num_classes, dtype=jnp.int32)
            bad = ~jnp.all(jnp.isfinite(logits), axis=-1, keepdims=True)
            hits = jnp.concatenate([hits, bad.astype(jnp.int32)], axis=-1)
            hits = hits * (pair < ends[-1])[:, None]
            return counts + jax.ops.segment_sum(hits, image, num_segments=num_images)

        steps = (ends[-1] + chunk - 1) // chunk
        zeros = jnp.zeros((num_images, num_classes + 1), jnp.int32)
        return jax.lax.fori_loop(0, steps, add_chunk, zeros)

    return jax.jit(count, out_shardings=sharding.replicated(mesh))


class BatchCounter:
    """Counts ranges of draws for every image of a batch, one program per
    noise-window shape (module docstring).

    Arguments are taken as validated. The images, masks and weights go to the
    devices once, however many ranges are counted.

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
            jax.device_put(self.classify, sharding.replicated(mesh)),
            put(np.asarray(xs, np.float32)),
        )
        self.groups = []  # (window shape, member flags, placed arrays)
        for window in sorted(set(windows)):
            members = np.array([w == window for w in windows])
            window_masks = np.zeros((self.num_images, *window), np.float32)
            for b in np.flatnonzero(members):
                (top, left) = corners[b]
                window_masks[b] = masks[b][
                    top : top + window[0], left : left + window[1]
                ]
            placed = (*fixed, put(window_masks), put(np.array(corners, np.int32)))
            self.groups.append((window, members, placed))
        self.sigma = put(np.float32(sigma))

    def count(self, keys: jax.Array, starts, nums, chunk: int) -> np.ndarray:
        """``[B, K]`` int64 counts of draws ``starts[b] .. starts[b] + nums[b] - 1``
        of each image with key ``keys[b]``; ``chunk`` (a multiple of the mesh's
        device count) pairs per device step.

        Raises:
          ValueError: ``classify`` returned NaN or inf logits for some draw.
        """
        put = functools.partial(sharding.replicate, mesh=self.mesh)
        key_data = put(np.asarray(jax.random.key_data(keys)))
        key_impl = jax.random.key_impl(keys)
        starts = put(np.asarray(starts, np.int32))
        nums = np.asarray(nums, np.int64)
        pending = []
        for window, members, placed in self.groups:
            group_nums = np.where(members, nums, 0).astype(np.int32)
            if not group_nums.any():
                continue
            program = batch_counts_program(
                self.mesh, chunk, self.num_classes, key_impl, window, self.num_images
            )
            # Dispatch is asynchronous: every group's program is queued first.
            pending.append(
                program(*placed, self.sigma, key_data, starts, put(group_nums))
            )
        counts = np.zeros((self.num_images, self.num_classes + 1), np.int64)
        for result in pending:
            counts += np.asarray(result).astype(np.int64)
        broken = np.flatnonzero(counts[:, -1])
        if broken.size:
            b = int(broken[0])
            raise ValueError(
                f"classify ({describe(self.classify)}) returned NaN or inf logits "
                f"for {counts[b, -1]} noisy samples of image {b}: the classifier "
                "is broken (e.g. non-finite weights), so its counts would be "
                "meaningless"
            )
        return counts[:, :-1]
