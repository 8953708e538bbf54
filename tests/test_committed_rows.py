"""The refactored pipeline reproduces rows written before it (issue 20).

``tests/data/digits_rows.json`` holds the rows (every field but ``seconds``) of
the digits demo's settings on a fixed template classifier for the first three
test images, in four modes, written by commit 5da872c, the last before the
functional core (``python tests/_digits_rows.py``). The same keys must give the
same rows, image by image and in groups.
"""

import dataclasses
import json
from pathlib import Path

import pytest
from _digits_rows import CASES, NUM_IMAGES, rows, template_classifier

EXPECTED = json.loads((Path(__file__).parent / "data" / "digits_rows.json").read_text())



@pytest.mark.parametrize("case", sorted(CASES))
def test_digits_demo_rows_equal_the_rows_before_the_refactor(case):
    written = rows(case)
    assert len(written) == NUM_IMAGES
    expected = EXPECTED[case]
    for old, new in zip(expected, written, strict=True):
        assert {k: new.get(k) for k in old} == old


def test_the_grouped_job_writes_the_same_rows(tmp_path):
    from mrs_jax.core import configfile
    from mrs_jax.job import _run as job

    config = configfile.load("certify/configs/digits.py", False, job.JobConfig)
    config = dataclasses.replace(
        config, num_images=NUM_IMAGES, images_per_batch=NUM_IMAGES, **CASES["practical"]
    )
    written = job.run(
        config, tmp_path, classify=template_classifier(), num_classes=10,
        progress=False,
    )
    for old, new in zip(EXPECTED["practical"], written, strict=True):
        assert {k: new.get(k) for k in old} == old
