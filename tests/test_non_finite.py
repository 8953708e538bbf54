"""No label is ever taken from non-finite logits: every host driver refuses them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _job_helpers import NUM_CLASSES, tiny_config
from jax.tree_util import Partial

import mrs_jax
from mrs_jax import job
from mrs_jax.localization import predicted_labels

SHAPE = (12, 12, 3)
IMAGE = np.random.default_rng(0).uniform(size=SHAPE).astype(np.float32)
MASKS = mrs_jax.patchcleanser_masks(SHAPE[:2], 3, 3)


def _nan_where_dark(threshold, images):
    """Class 0 for bright images; NaN logits once a block of the image is grey."""
    logits = jnp.stack([images.mean((1, 2, 3)), 1 - images.mean((1, 2, 3))], -1)
    flat = images.reshape(images.shape[0], -1)
    grey = jnp.any(jnp.abs(flat - 0.5) < threshold, axis=-1)
    return jnp.where(grey[:, None], jnp.nan, logits)


ALWAYS_NAN = Partial(_nan_where_dark, 2.0)  # every image has a grey pixel


def test_predicted_labels_gives_minus_one_for_non_finite_rows():
    def classify(images):
        return jnp.array([[0.0, 1.0], [jnp.nan, 1.0], [jnp.inf, 0.0]])

    labels = jax.jit(predicted_labels, static_argnums=0)(classify, jnp.zeros((3, 2)))
    assert labels.tolist() == [1, -1, -1]


@pytest.mark.parametrize(
    "call",
    [
        lambda: mrs_jax.double_masking(ALWAYS_NAN, IMAGE, MASKS),
        lambda: mrs_jax.patchcleanser(ALWAYS_NAN, IMAGE, MASKS),
        lambda: mrs_jax.double_masking_certify(ALWAYS_NAN, IMAGE, 0, MASKS),
        lambda: mrs_jax.prediction_map(ALWAYS_NAN, IMAGE, 3),
        lambda: mrs_jax.prediction_map(ALWAYS_NAN, IMAGE, 3, method="harmonic"),
        lambda: mrs_jax.localize(ALWAYS_NAN, IMAGE, 3, method="harmonic"),
        lambda: mrs_jax.localize(ALWAYS_NAN, IMAGE, 3),
    ],
    ids=["double_masking", "patchcleanser", "certify", "map_telea",
         "map_harmonic", "localize_harmonic", "localize_telea"],
)
def test_host_drivers_refuse_non_finite_logits(call):
    with pytest.raises(ValueError, match="non-finite logits"):
        call()


def test_the_job_refuses_a_classifier_with_non_finite_logits(tmp_path):
    def classify(images):
        return jnp.full((images.shape[0], NUM_CLASSES), jnp.nan)

    config = tiny_config(mode="double_masking", num_images=1)
    with pytest.raises(ValueError, match="non-finite"):
        job.run(config, tmp_path, classify=classify, num_classes=NUM_CLASSES,
                progress=False, fingerprint="nan")
