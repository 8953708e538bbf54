"""The digits demo's settings on a fixed template classifier: the rows of the
first images, as ``test_committed_rows`` compares them with rows written by the
code before the pipeline's refactor (``tests/data/digits_rows.json``).

Run as a script to write that file: ``python tests/_digits_rows.py OUT.json``
(it was written with commit 5da872c, the last before the refactor, under XLA's
default settings). ``--grouped`` adds the practical case run in one group
(``grouped_practical``): the test runs this script with XLA's defaults, since
the suite's cheaper compiler settings change float rounding and with it the
counts of a draw near a decision.
"""

import dataclasses
import json
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

# The modes compared and their changes to the digits demo config (smaller
# budgets keep the test short; every row field still comes from the job).
CASES = {
    "practical": dict(num_locations=8, attack_steps=4, n=2000),
    "clean_target": dict(mode="clean", target_radius="unrestricted", n=4000),
    "center": dict(mode="center", n=1000),
    "double_masking": dict(mode="double_masking", pc_k=4),
}
NUM_IMAGES = 3


def _templates(weights, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights) * 10.0


def template_classifier():
    """Nearest-class-mean logits on the digits training set (exact inputs)."""
    from mrs_jax.data import load_dataset

    images, labels = load_dataset("digits", "train")
    images = np.asarray(images, np.float64)
    means = np.stack([images[labels == k].mean(0) for k in range(10)], axis=-1)
    means -= means.mean(axis=-1, keepdims=True)
    return Partial(_templates, jnp.asarray(means.astype(np.float32)))


def rows(case: str, grouped: bool = False) -> list[dict]:
    from mrs_jax.core import configfile
    from mrs_jax.job import _run as job

    config = configfile.load("certify/configs/digits.py", False, job.JobConfig)
    config = dataclasses.replace(config, num_images=NUM_IMAGES, **CASES[case])
    if grouped:
        config = dataclasses.replace(config, images_per_batch=NUM_IMAGES)
    with tempfile.TemporaryDirectory() as out:
        written = job.run(
            config, out, classify=template_classifier(), num_classes=10,
            progress=False,
        )
    return [{k: v for k, v in r.items() if k != "seconds"} for r in written]


if __name__ == "__main__":
    result = {case: rows(case) for case in CASES}
    if "--grouped" in sys.argv[2:]:
        result["grouped_practical"] = rows("practical", grouped=True)
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
