"""A tiny classifier and job config shared by the job tests (and their subprocess)."""

import os
import re
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mrs_jax.job import JobConfig

SHAPE = (16, 16, 3)
NUM_CLASSES = 4


def _linear(weights, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights)


def xla_flags(devices: int) -> str:
    """The suite's XLA flags (``conftest.py``) with ``devices`` fake CPU devices,
    for a subprocess: the same compiler settings as the test beside it."""
    return re.sub(
        r"device_count=\d+", f"device_count={devices}", os.environ["XLA_FLAGS"]
    )


def tiny_classifier(seed: int = 0):
    """A random linear classifier [B, 16, 16, 3] -> [B, 4], weights as leaves."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(*SHAPE, NUM_CLASSES)).astype(np.float32)
    return Partial(_linear, jnp.asarray(weights))


def _features(weights, images):
    height, width = images.shape[1:3]
    return jnp.einsum("bhwc,hwck->bhwk", images, weights) * (height * width)


def _head(features):
    return features.mean(axis=(1, 2))


def encoded_classifier(seed: int = 0):
    """A random linear classifier of encoded ablations (mode ``drs``):
    [B, 16, 16, 6] -> [B, 4]."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(*SHAPE[:2], 2 * SHAPE[2], NUM_CLASSES))
    return Partial(_linear, jnp.asarray(weights.astype(np.float32)))


def tiny_features_and_head(seed: int = 0):
    """Grad-CAM's split of ``tiny_classifier(seed)``: head(features(x)) == logits."""
    weights = tiny_classifier(seed).args[0]
    return Partial(_features, weights), Partial(_head)


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


def write_checkpoint(
    workdir,
    *,
    seed: int = 0,
    dataset: str = "synthetic",
    shape=SHAPE,
    num_classes: int = NUM_CLASSES,
    sigma: float = 0.25,
):
    """A training work dir holding an untrained ``tiny_cnn`` (no training: fast).

    ``load_model`` reads it like a trained one; ``seed`` changes the weights.
    """
    from flax import nnx

    from mrs_jax.models import _checkpoint as checkpoint, get_model

    Path(workdir).mkdir(parents=True, exist_ok=True)
    model = get_model("tiny_cnn", num_classes=num_classes, seed=seed)
    _, params, batch_stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    checkpoint.write_model_meta(
        workdir,
        {
            "model": "tiny_cnn",
            "num_classes": num_classes,
            "model_kwargs": {},
            "image_shape": list(shape),
            "dataset": dataset,
            "sigma": sigma,
        },
    )
    manager = checkpoint.checkpoint_manager(workdir)
    checkpoint.save_checkpoint(
        manager,
        1,
        {"params": params, "batch_stats": batch_stats},
        {"step": np.zeros((), np.int32)},
        {"epoch": 1},
    )
    manager.close()
    return workdir


def write_certify_config(path, **changes):
    """A certify config file for ``python -m certify`` on the synthetic data."""
    fields = {
        "mode": "center",
        "dataset": "synthetic",
        "num_images": 6,
        "patch_size": 3,
        "sigma": 0.25,
        "n0": 16,
        "n": 256,
        "batch_size": 64,
        "synthetic_shape": SHAPE,
        "synthetic_classes": NUM_CLASSES,
        **changes,
    }
    body = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    path.write_text(
        "from mrs_jax.job import JobConfig\n\n\n"
        "def get_config(smoke=False):\n"
        f"    return JobConfig({body})\n"
    )
    return path


def ctrl_c_command(module: str) -> list[str]:
    """``python -m module`` with Python's own SIGINT handler.

    A child of a test run started with SIGINT ignored (``nohup pytest &``) would
    inherit SIG_IGN and keep it; Ctrl-C tests need the default handler.
    """
    launcher = (
        "import runpy, signal; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", launcher]
