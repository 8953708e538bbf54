"""The CIFAR-10 CPU checkpoint committed in benchmarks/ loads and classifies."""

from pathlib import Path

import numpy as np

import mrs_jax

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "benchmarks" / "checkpoints" / "cifar10_cpu"


def test_committed_cifar10_checkpoint_loads_and_is_clamped():
    classify, meta = mrs_jax.load_classifier(CHECKPOINT)
    assert meta["dataset"] == "cifar10" and meta["num_classes"] == 10
    assert meta["sigma"] == 7.0 and meta["model"] == "fast_cnn"
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    logits = np.asarray(classify(x))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
    # The model clips its input to [0, 1]: noise beyond it changes nothing.
    beyond = np.where(x > 0.5, x + 5.0, x - 5.0).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(classify(beyond)), np.asarray(classify(np.round(x))), atol=1e-4
    )
