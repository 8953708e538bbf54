"""A tiny classifier and job config shared by the job tests (and their subprocess)."""

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mrs_jax.job import JobConfig

SHAPE = (16, 16, 3)
NUM_CLASSES = 4


def _linear(weights, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights)


def tiny_classifier(seed: int = 0):
    """A random linear classifier [B, 16, 16, 3] -> [B, 4], weights as leaves."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(*SHAPE, NUM_CLASSES)).astype(np.float32)
    return Partial(_linear, jnp.asarray(weights))


def tiny_config(**changes) -> JobConfig:
    config = JobConfig(
        mode="practical",
        dataset="synthetic",
        num_images=6,
        patch_size=3,
        num_locations=4,
        attack_steps=2,
        attack_step_size=0.2,
        localize_batch_size=64,
        sigma=0.25,
        n0=16,
        n=256,
        batch_size=64,
        synthetic_shape=SHAPE,
        synthetic_classes=NUM_CLASSES,
    )
    return JobConfig(**{**config.__dict__, **changes})
